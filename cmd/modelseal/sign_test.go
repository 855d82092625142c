package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const vecs = "../../testdata/model-signing"

func vkey(name string) string { return filepath.Join(vecs, "keys/certificate", name) }

func signModelDir(t *testing.T) string {
	t.Helper()
	return writeFiles(t, map[string][]byte{
		"model/config.json":       []byte(`{"a":1}`),
		"model/weights/w.bin":     []byte(strings.Repeat("w", 3000)),
		"model/.gitattributes":    []byte("x"),
		"model/tokenizer/.hidden": []byte("h"),
		"model/README.md":         []byte("readme"),
	}) + "/model"
}

// TestSignVerifyCLI drives the CLI through every method and failure mode
// with its exit code.
func TestSignVerifyCLI(t *testing.T) {
	model := signModelDir(t)
	sig := filepath.Join(model, "model.sig")
	certSig := filepath.Join(filepath.Dir(model), "cert.sig")
	omsSig := filepath.Join(filepath.Dir(model), "oms.sig")
	steps := []struct {
		name string
		args []string
		code int
		out  string // substring of stdout+stderr
	}{
		{"sign key", []string{"sign", "key", "--private-key", vkey("signing-key.pem"), model}, 0, "signed model: 4 files"},
		{"verify key", []string{"verify", "key", "--public-key", vkey("signing-key-pub.pem"), model}, 0, "verified"},
		{"model_signing flag spelling", []string{"verify", "key", "--public_key", vkey("signing-key-pub.pem"), "--signature", sig, model}, 0, "verified"},
		{"verify key, missing flag", []string{"verify", "key", model}, 3, "--public-key is required"},
		{"verify key, wrong key file", []string{"verify", "key", "--public-key", vkey("ca-cert.pem"), model}, 2, "--public-key"},
		{"verify, no signature", []string{"verify", "key", "--public-key", vkey("signing-key-pub.pem"), "--signature", sig + ".nope", model}, 2, "no such file"},
		{"verify, garbage signature", []string{"verify", "key", "--public-key", vkey("signing-key-pub.pem"), "--signature", filepath.Join(model, "config.json"), model}, 2, "malformed signature bundle"},
		{"sign certificate", []string{"sign", "certificate", "--private_key", vkey("signing-key.pem"), "--signing_certificate", vkey("signing-key-cert.pem"), "--certificate_chain", vkey("int-ca-cert.pem"), "--signature", certSig, model}, 0, "signed model: 5 files"},
		{"verify certificate", []string{"verify", "certificate", "--cert-chain", vkey("ca-cert.pem"), "--signature", certSig, model}, 0, "verified"},
		{"verify certificate, CA file without certificates", []string{"verify", "certificate", "--cert-chain", vkey("ca-priv.pem"), "--signature", certSig, model}, 2, "no CERTIFICATE"},
		{"verify certificate bundle with the key verifier", []string{"verify", "key", "--public-key", vkey("signing-key-pub.pem"), "--signature", certSig, model}, 0, "verified"},
		{"adapter sign", []string{"oms", "sign-model", "--method", "key", "--model-path", model, "--output-bundle", omsSig, "--private-key", vkey("signing-key.pem"), "--ignore-paths", "README.md"}, 0, "signed"},
		{"adapter verify", []string{"oms", "verify-model", "--method", "key", "--model-path", model, "--bundle", omsSig, "--public-key", vkey("signing-key-pub.pem")}, 0, "verified"},
		{"adapter verify, unsigned file", []string{"oms", "verify-model", "--method", "key", "--model-path", model, "--bundle", omsSig, "--public-key", vkey("signing-key-pub.pem"), "--ignore-paths", "model.sig"}, 1, "missing: model.sig"},
		{"adapter verify certificate", []string{"oms", "verify-model", "--method", "certificate", "--model-path", model, "--bundle", certSig, "--cert-chain", vkey("ca-cert.pem")}, 0, "verified"},
		{"keyless verify of a key signature", []string{"verify", "--identity", "a@b", "--identity-provider", "https://x", model}, 1, "not a keyless"},
		{"keyless sign without a token", []string{"sign", "sigstore", model}, 3, "identity token"},
		{"unknown method", []string{"oms", "verify-model", "--method", "pgp", "--model-path", model, "--bundle", sig}, 3, "unknown verification method"},
	}
	t.Setenv("SIGSTORE_ID_TOKEN", "")
	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_URL", "")
	for _, s := range steps {
		code, out, errOut := runCLI(s.args...)
		if code != s.code || !strings.Contains(out+errOut, s.out) {
			t.Errorf("%s: exit %d, want %d; output %q does not contain %q", s.name, code, s.code, out+errOut, s.out)
		}
	}
	// Tamper: exit 1 with every changed, missing and extra file.
	os.WriteFile(filepath.Join(model, "config.json"), []byte(`{"a":2}`), 0o644)
	os.Remove(filepath.Join(model, "tokenizer/.hidden"))
	os.WriteFile(filepath.Join(model, "extra.py"), []byte("import os"), 0o644)
	code, _, errOut := runCLI("verify", "key", "--public-key", vkey("signing-key-pub.pem"), model)
	for _, w := range []string{"changed: config.json", "missing: tokenizer/.hidden", "extra (not signed): extra.py"} {
		if code != 1 || !strings.Contains(errOut, w) {
			t.Errorf("tampered: exit %d, %q lacks %q", code, errOut, w)
		}
	}
	// With unsigned files ignored, extra.py is no longer reported.
	code, _, errOut = runCLI("verify", "key", "--public-key", vkey("signing-key-pub.pem"), "--ignore-unsigned-files", model)
	if code != 1 || strings.Contains(errOut, "extra (not signed)") || !strings.Contains(errOut, "changed: config.json") {
		t.Errorf("ignore unsigned: exit %d, %q", code, errOut)
	}
}

// TestVectorsCLI runs upstream's own verify command lines, from the vectors
// folder as upstream does.
func TestVectorsCLI(t *testing.T) {
	wd, _ := os.Getwd()
	t.Chdir(vecs)
	defer os.Chdir(wd)
	cmds := [][]string{
		{"verify", "key", "--signature", "./v1.0.1-elliptic-key/model.sig", "--public_key", "./keys/certificate/signing-key-pub.pem", "--ignore-paths", "./v1.0.1-elliptic-key/ignore-me", "./v1.0.1-elliptic-key"},
		{"verify", "key", "--signature", "./v0.3.1-elliptic-key/model.sig", "--public_key", "./keys/certificate/signing-key-pub.pem", "./v0.3.1-elliptic-key/signme-1"},
		{"verify", "certificate", "--signature", "./v0.2.0-certificate/model.sig", "--certificate_chain", "./keys/certificate/ca-cert.pem", "./v0.2.0-certificate/"},
		{"verify", "certificate", "--signature", "./v1.0.1-certificate/model.sig", "--certificate_chain", "./keys/certificate/ca-cert.pem", "--ignore-paths", "./v1.0.1-certificate/ignore-me", "./v1.0.1-certificate/"},
		{"verify", "sigstore", "--signature", "./v1.1.0-sigstore/model.sig", "--identity", "stefanb@us.ibm.com", "--identity_provider", "https://sigstore.verify.ibm.com/oauth2", "./v1.1.0-sigstore/"},
		{"verify", "--signature", "./v0.3.1-sigstore/model.sig", "--identity", "stefanb@us.ibm.com", "--identity_provider", "https://sigstore.verify.ibm.com/oauth2", "--trusted-root", "trust/trusted_root.json", "./v0.3.1-sigstore/"},
	}
	for _, c := range cmds {
		if code, out, errOut := runCLI(c...); code != 0 {
			t.Errorf("%v: exit %d %s %s", c, code, out, errOut)
		}
	}
}

func TestHashCLI(t *testing.T) {
	code, out, errOut := runCLI("hash", filepath.Join(vecs, "v1.1.0-certificate"), "--ignore-paths", "ignore-me")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "f6310066c7320497ea554260c32c43660bff648cb2a61194832cc086077085e1  signme-1\n" +
		"32dcb1f8e1ae52d5963e56a6ba06ab58b424c15ed2a6b70d2feca1d089370028  signme-2\n" +
		"61d4849d9d90076d6215f4d525f13d6574af8e3f67aef3e6f36fc40a14fdd226  v1.1.0-certificate (root, sha256 over 2 sha256 digests)\n"
	if out != want {
		t.Errorf("hash output\n%s\nwant\n%s", out, want)
	}
	code, out, _ = runCLI("hash", "--format", "statement", "--shard-size", "4", filepath.Join(vecs, "v1.1.0-certificate"))
	if code != 0 || !strings.Contains(out, `"shard_size": 4`) || !strings.Contains(out, `"name": "signme-1:4:8"`) {
		t.Errorf("statement: exit %d\n%s", code, out)
	}
	if code, _, _ := runCLI("hash", "--hash-algorithm", "md5", vecs); code != 3 {
		t.Errorf("bad algorithm: exit %d", code)
	}
	if code, _, _ := runCLI("hash", filepath.Join(vecs, "nope")); code != 2 {
		t.Errorf("missing model: exit %d", code)
	}
}
