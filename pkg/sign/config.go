package sign

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
)

//go:embed publicgood_signing_config.json
var publicGoodSigningConfig []byte

// PublicGoodSigningConfig is the Sigstore public-good signing configuration:
// fulcio.sigstore.dev, rekor.sigstore.dev (Rekor v1) and
// timestamp.sigstore.dev.
func PublicGoodSigningConfig() (*root.SigningConfig, error) {
	sc, err := root.NewSigningConfigFromJSON(publicGoodSigningConfig)
	if err != nil {
		return nil, fmt.Errorf("embedded public-good signing config: %w", err)
	}
	return sc, nil
}

// MaxConfigSize bounds trust and signing configuration files.
const MaxConfigSize = 16 << 20

// ParseTrustConfig reads a Sigstore ClientTrustConfig
// (application/vnd.dev.sigstore.clienttrustconfig.v0.1+json: a signingConfig
// and a trustedRoot, as model_signing's --trust_config takes), or a bare
// signing config. The trusted root is nil when absent.
func ParseTrustConfig(data []byte) (*root.SigningConfig, *root.TrustedRoot, error) {
	if len(data) > MaxConfigSize {
		return nil, nil, fmt.Errorf("trust config of %d bytes is too large", len(data))
	}
	var tc struct {
		MediaType     string          `json:"mediaType"`
		SigningConfig json.RawMessage `json:"signingConfig"`
		SigningConfg2 json.RawMessage `json:"signing_config"`
		TrustedRoot   json.RawMessage `json:"trustedRoot"`
		TrustedRoot2  json.RawMessage `json:"trusted_root"`
	}
	if err := json.Unmarshal(data, &tc); err != nil {
		return nil, nil, fmt.Errorf("trust config: %w", err)
	}
	// protojson accepts both the JSON and the proto field names.
	if tc.SigningConfig == nil {
		tc.SigningConfig = tc.SigningConfg2
	}
	if tc.TrustedRoot == nil {
		tc.TrustedRoot = tc.TrustedRoot2
	}
	if tc.SigningConfig == nil {
		sc, err := root.NewSigningConfigFromJSON(data)
		if err != nil {
			return nil, nil, fmt.Errorf("trust config: neither a client trust config nor a signing config: %w", err)
		}
		return sc, nil, nil
	}
	sc, err := root.NewSigningConfigFromJSON(tc.SigningConfig)
	if err != nil {
		return nil, nil, fmt.Errorf("trust config: signingConfig: %w", err)
	}
	var tr *root.TrustedRoot
	if tc.TrustedRoot != nil {
		if tr, err = root.NewTrustedRootFromJSON(tc.TrustedRoot); err != nil {
			return nil, nil, fmt.Errorf("trust config: trustedRoot: %w", err)
		}
	}
	return sc, tr, nil
}

// IdentityToken finds an OIDC token for keyless signing: the explicit one,
// else $SIGSTORE_ID_TOKEN, else GitHub Actions ambient credentials
// (ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN, audience "sigstore"). getenv
// and client are injectable for tests (nil: os.Getenv, http.DefaultClient).
func IdentityToken(ctx context.Context, explicit string, getenv func(string) string, client *http.Client) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	if t := getenv("SIGSTORE_ID_TOKEN"); t != "" {
		return t, nil
	}
	reqURL, reqTok := getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	if reqURL == "" || reqTok == "" {
		return "", errors.New("no identity token: pass --identity-token, set SIGSTORE_ID_TOKEN, or run in GitHub Actions with id-token: write")
	}
	u, err := url.Parse(reqURL)
	if err != nil {
		return "", fmt.Errorf("ACTIONS_ID_TOKEN_REQUEST_URL: %w", err)
	}
	q := u.Query()
	q.Set("audience", "sigstore")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("GitHub Actions token request: %w", err)
	}
	req.Header.Set("Authorization", "bearer "+reqTok)
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("GitHub Actions token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("GitHub Actions token request: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GitHub Actions token request: HTTP %d", resp.StatusCode)
	}
	var v struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Value == "" {
		return "", errors.New("GitHub Actions token request: no token in the response")
	}
	return v.Value, nil
}
