package verify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tuf"
)

// TrustedRootOptions say where a refreshed public-good trusted root comes from.
type TrustedRootOptions struct {
	// Offline skips the TUF refresh: the embedded root is used.
	Offline bool
	// CacheDir holds the TUF metadata between runs (default: the user's
	// cache folder, modelseal/tuf).
	CacheDir string
	// Timeout bounds the refresh (default 10 s).
	Timeout time.Duration
	// Mirror is the TUF repository (default: Sigstore's public-good CDN).
	Mirror string
}

// RefreshedTrustedRoot returns the public-good trusted root, refreshed
// through Sigstore's TUF repository when the network allows (verified
// against the TUF root sigstore-go embeds, cached in CacheDir), and the
// root embedded in modelseal otherwise. The string says which was used and,
// for the embedded one, why.
func RefreshedTrustedRoot(ctx context.Context, opts TrustedRootOptions) (*root.TrustedRoot, string, error) {
	embedded := func(why string) (*root.TrustedRoot, string, error) {
		tr, err := PublicGoodTrustedRoot()
		return tr, "embedded public-good trusted root (" + why + ")", err
	}
	if opts.Offline {
		return embedded("offline")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.CacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return embedded("no cache folder: " + err.Error())
		}
		opts.CacheDir = filepath.Join(dir, "modelseal", "tuf")
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	type result struct {
		tr  *root.TrustedRoot
		err error
	}
	done := make(chan result, 1)
	go func() {
		o := tuf.DefaultOptions().WithCachePath(opts.CacheDir).WithContext(ctx)
		if opts.Mirror != "" {
			o = o.WithRepositoryBaseURL(opts.Mirror)
		}
		tr, err := root.FetchTrustedRootWithOptions(o)
		done <- result{tr, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return embedded(fmt.Sprintf("TUF refresh failed: %v", r.err))
		}
		return r.tr, "public-good trusted root refreshed through TUF", nil
	case <-ctx.Done():
		return embedded("TUF refresh timed out")
	}
}
