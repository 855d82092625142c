package verify

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseBundle feeds arbitrary bytes to the bundle decoder, seeded with
// every model_signing vector: it must return an error or a bundle, never
// panic, and a decoded bundle always has exactly one signature.
func FuzzParseBundle(f *testing.F) {
	sigs, _ := filepath.Glob(filepath.Join(vectors, "v*", "model.sig"))
	for _, p := range sigs {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{"payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"AA=="}]},"verificationMaterial":{"publicKey":{"rawBytes":"AA=="}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(data)
		if err != nil {
			return
		}
		if len(b.Signature) == 0 || b.PB.GetDsseEnvelope() == nil {
			t.Fatal("decoded bundle without a signature")
		}
	})
}
