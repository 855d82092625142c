// Package ocitest starts loopback OCI registries for tests and benchmarks:
// an in-process olareg (full referrers API) and Debian's docker-registry
// process (distribution 2.8, no referrers API: clients fall back to the
// referrers tag).
package ocitest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/olareg/olareg"
	"github.com/olareg/olareg/config"
)

// DockerRegistryBinary is where Debian's docker-registry package installs
// the registry.
const DockerRegistryBinary = "/usr/bin/docker-registry"

// SkipDockerRegistryEnv, set to 1, skips the docker-registry tests instead
// of failing them when the binary is absent.
const SkipDockerRegistryEnv = "MODELSEAL_SKIP_DOCKER_REGISTRY"

// Olareg starts an in-memory olareg registry behind handler wrap (nil for
// none) and returns its host:port. It stops with the test.
func Olareg(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = olareg.New(config.Config{Storage: config.ConfigStorage{StoreType: config.StoreMem}})
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// DockerRegistry starts docker-registry on a free loopback port with its
// storage in a temporary folder and returns host:port. Without the binary
// the test fails with instructions, or is skipped when
// MODELSEAL_SKIP_DOCKER_REGISTRY=1.
func DockerRegistry(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(DockerRegistryBinary); err != nil {
		if os.Getenv(SkipDockerRegistryEnv) == "1" {
			t.Skipf("%s not installed and %s=1", DockerRegistryBinary, SkipDockerRegistryEnv)
		}
		t.Fatalf("%s is not installed: run `apt-get install -y docker-registry` (or set %s=1 to skip these tests)",
			DockerRegistryBinary, SkipDockerRegistryEnv)
	}
	addr, stop, err := StartDockerRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}

// StartDockerRegistry starts docker-registry with its configuration and
// storage under dir, waits until it answers, and returns its address and a
// function that stops it.
func StartDockerRegistry(dir string) (addr string, stop func(), err error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	storage := filepath.Join(dir, "storage")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return "", nil, err
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, storage, addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return "", nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(DockerRegistryBinary, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", nil, fmt.Errorf("starting %s: %w", DockerRegistryBinary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			logf.Close()
			log, _ := os.ReadFile(logf.Name())
			return "", nil, fmt.Errorf("docker-registry exited: %v\n%s", err, log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr, stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, errors.New("docker-registry did not answer on " + addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// CorruptBlob wraps a registry handler so that GET requests for the blob
// with the given digest ("sha256:...") return other bytes of the same
// length: a registry serving content that does not match its digest.
func CorruptBlob(dgst string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+dgst) {
				next.ServeHTTP(&corrupter{ResponseWriter: w}, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

type corrupter struct {
	http.ResponseWriter
	done bool
}

func (c *corrupter) Write(p []byte) (int, error) {
	if !c.done && len(p) > 0 {
		q := append([]byte{}, p...)
		q[0] ^= 0xff
		c.done = true
		return c.ResponseWriter.Write(q)
	}
	return c.ResponseWriter.Write(p)
}
