// Package oms encodes and decodes the OpenSSF Model Signing (OMS) v1.0
// statement: an in-toto Statement v1 whose predicate lists every file (or
// file shard) of a model with its digest, and whose single subject carries
// the root digest. It also decodes the older shapes written by model_signing
// 0.2 to 1.0, and compares a signed manifest with a freshly hashed one.
package oms

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/modelfs"
)

// Format constants.
const (
	StatementType    = "https://in-toto.io/Statement/v1"
	PredicateType    = "https://model_signing/signature/v1.0"
	PredicateTypeV01 = "https://model_signing/Digests/v0.1"
	PayloadType      = "application/vnd.in-toto+json"
	BundleMediaType  = "application/vnd.dev.sigstore.bundle.v0.3+json"
	MethodFiles      = "files"
	MethodShards     = "shards"
	// LegacyModelName is the model name model_signing gives v0.1 statements,
	// which do not record one.
	LegacyModelName = "compat-undefined-not-present"
)

// Limits of the decoder.
const (
	// MaxStatementSize bounds a statement (a 141 GB model in 1 MiB shards
	// makes about 20 MB).
	MaxStatementSize = 256 << 20
	// MaxNameLength bounds a resource name.
	MaxNameLength = 4096
	// MaxDigestLength bounds a decoded digest (BLAKE2b is 64 bytes).
	MaxDigestLength = 64
)

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("malformed OMS statement")

// Serialization is the predicate's record of how the model was hashed.
type Serialization struct {
	// Method is MethodFiles or MethodShards.
	Method string
	// HashType is the digest algorithm (sha256, blake2b, blake3).
	HashType digest.Algorithm
	// AllowSymlinks records whether links were followed.
	AllowSymlinks bool
	// IgnorePaths are relative to the model; nil when the signer did not
	// record them (model_signing < 1.1).
	IgnorePaths []string
	// ShardSize is set for MethodShards.
	ShardSize int64
}

// Resource is one signed file or shard.
type Resource struct {
	// Name is the file's relative name, or "name:start:end" for a shard.
	Name string
	// Algorithm is the hash_type for files, "<hash_type>-sharded-<N>" for
	// shards.
	Algorithm string
	// Digest is the raw digest.
	Digest []byte
}

// Manifest is the content of an OMS statement.
type Manifest struct {
	// ModelName is the subject name (the model folder's or file's base name).
	ModelName string
	// Serialization describes the hashing.
	Serialization Serialization
	// Resources are in statement order.
	Resources []Resource
	// Legacy is true for the v0.1 "Digests" predicate (model_signing 0.2).
	Legacy bool
}

// ShardAlgorithm is the resource algorithm of a shard.
func ShardAlgorithm(alg digest.Algorithm, shardSize int64) string {
	return fmt.Sprintf("%s-sharded-%d", alg, shardSize)
}

// ShardName is the resource name of a shard.
func ShardName(file string, start, end int64) string {
	return fmt.Sprintf("%s:%d:%d", file, start, end)
}

// ParseShardName splits "path:start:end" at the last two colons.
func ParseShardName(name string) (file string, start, end int64, err error) {
	j := strings.LastIndexByte(name, ':')
	if j < 0 {
		return "", 0, 0, fmt.Errorf("shard name %q: want path:start:end", name)
	}
	i := strings.LastIndexByte(name[:j], ':')
	if i < 0 {
		return "", 0, 0, fmt.Errorf("shard name %q: want path:start:end", name)
	}
	file = name[:i]
	start, err1 := strconv.ParseInt(name[i+1:j], 10, 64)
	end, err2 := strconv.ParseInt(name[j+1:], 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start || file == "" {
		return "", 0, 0, fmt.Errorf("shard name %q: bad offsets", name)
	}
	return file, start, end, nil
}

// New builds the manifest of a hashed file set. ignorePaths are recorded in
// the predicate (pass set.Ignored plus the signature's name, as
// model_signing does); resources are in the set's order, which is
// model_signing's sorted order.
func New(set *modelfs.Set, res *digest.Result, allowSymlinks bool, ignorePaths []string) *Manifest {
	m := &Manifest{
		ModelName: set.Name,
		Serialization: Serialization{
			Method:        MethodFiles,
			HashType:      res.Algorithm,
			AllowSymlinks: allowSymlinks,
			IgnorePaths:   append([]string{}, ignorePaths...),
		},
	}
	alg := string(res.Algorithm)
	if res.ShardSize > 0 {
		m.Serialization.Method = MethodShards
		m.Serialization.ShardSize = res.ShardSize
		alg = ShardAlgorithm(res.Algorithm, res.ShardSize)
	}
	for _, it := range res.Items {
		name := it.File
		if res.ShardSize > 0 {
			name = ShardName(it.File, it.Start, it.End)
		}
		m.Resources = append(m.Resources, Resource{Name: name, Algorithm: alg, Digest: it.Sum})
	}
	return m
}

// RootDigest is SHA-256 over the raw resource digests in statement order.
func (m *Manifest) RootDigest() []byte {
	sums := make([][]byte, len(m.Resources))
	for i, r := range m.Resources {
		sums[i] = r.Digest
	}
	return digest.Root(sums)
}

type jsonSubject struct {
	Name        string            `json:"name"`
	Digest      map[string]string `json:"digest"`
	Annotations map[string]any    `json:"annotations,omitempty"`
}

type jsonSerialization struct {
	Method        string          `json:"method"`
	HashType      string          `json:"hash_type"`
	AllowSymlinks bool            `json:"allow_symlinks"`
	IgnorePaths   []string        `json:"ignore_paths,omitempty"`
	ShardSize     json.RawMessage `json:"shard_size,omitempty"`
}

type jsonResource struct {
	Name      string `json:"name"`
	Algorithm string `json:"algorithm"`
	Digest    string `json:"digest"`
}

type jsonPredicate struct {
	Serialization jsonSerialization `json:"serialization"`
	Resources     []jsonResource    `json:"resources"`
}

type jsonStatement struct {
	Type          string        `json:"_type"`
	Subject       []jsonSubject `json:"subject"`
	PredicateType string        `json:"predicateType"`
	Predicate     jsonPredicate `json:"predicate"`
}

// Statement encodes the in-toto statement (the DSSE payload) as
// model_signing does: two-space indented JSON.
func (m *Manifest) Statement() ([]byte, error) {
	if m.Legacy {
		return nil, errors.New("refusing to encode a legacy v0.1 statement")
	}
	st := jsonStatement{
		Type: StatementType,
		Subject: []jsonSubject{{
			Name:   m.ModelName,
			Digest: map[string]string{"sha256": hex.EncodeToString(m.RootDigest())},
		}},
		PredicateType: PredicateType,
		Predicate: jsonPredicate{
			Serialization: jsonSerialization{
				Method:        m.Serialization.Method,
				HashType:      string(m.Serialization.HashType),
				AllowSymlinks: m.Serialization.AllowSymlinks,
				IgnorePaths:   m.Serialization.IgnorePaths,
			},
			Resources: make([]jsonResource, len(m.Resources)),
		},
	}
	if m.Serialization.Method == MethodShards {
		st.Predicate.Serialization.ShardSize = json.RawMessage(strconv.FormatInt(m.Serialization.ShardSize, 10))
	}
	for i, r := range m.Resources {
		st.Predicate.Resources[i] = jsonResource{Name: r.Name, Algorithm: r.Algorithm, Digest: hex.EncodeToString(r.Digest)}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(st); err != nil {
		return nil, fmt.Errorf("encoding statement: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// rawStatement is the decoder's view; fields are loose so that every old
// shape decodes.
type rawStatement struct {
	Type    string `json:"_type"`
	Subject []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	PredicateType string `json:"predicateType"`
	Predicate     struct {
		Serialization struct {
			Method        string          `json:"method"`
			HashType      string          `json:"hash_type"`
			AllowSymlinks json.RawMessage `json:"allow_symlinks"`
			IgnorePaths   []string        `json:"ignore_paths"`
			ShardSize     json.RawMessage `json:"shard_size"`
		} `json:"serialization"`
		Resources []jsonResource `json:"resources"`
	} `json:"predicate"`
}

// ParseStatement decodes a DSSE payload. It accepts the v1.0 predicate (with
// or without ignore_paths, integer or float shard_size, sharded hash_type
// spellings) and the v0.1 "Digests" predicate of model_signing 0.2, and
// checks that the subject's root digest matches the resources.
func ParseStatement(payload []byte) (*Manifest, error) {
	if len(payload) > MaxStatementSize {
		return nil, malformed("statement of %d bytes exceeds the %d byte limit", len(payload), MaxStatementSize)
	}
	var st rawStatement
	if err := json.Unmarshal(payload, &st); err != nil {
		return nil, malformed("%v", err)
	}
	if st.Type != StatementType {
		return nil, malformed("statement type %q, want %q", st.Type, StatementType)
	}
	switch st.PredicateType {
	case PredicateType:
	case PredicateTypeV01:
		return parseV01(&st)
	default:
		return nil, malformed("predicate type %q, want %q", st.PredicateType, PredicateType)
	}
	if len(st.Subject) != 1 {
		return nil, malformed("%d subjects, want exactly one", len(st.Subject))
	}
	m := &Manifest{ModelName: st.Subject[0].Name}
	want, ok := st.Subject[0].Digest["sha256"]
	if !ok {
		return nil, malformed("subject has no sha256 digest")
	}
	ser := st.Predicate.Serialization
	m.Serialization.Method = ser.Method
	hashType := ser.HashType
	switch ser.Method {
	case MethodFiles:
	case MethodShards:
		n, err := parseShardSize(ser.ShardSize)
		if err != nil {
			return nil, err
		}
		m.Serialization.ShardSize = n
		// Some releases wrote the shard algorithm as hash_type.
		hashType = strings.TrimSuffix(hashType, "-sharded-"+strconv.FormatInt(n, 10))
	default:
		return nil, malformed("serialization method %q, want files or shards", ser.Method)
	}
	alg, err := digest.ParseAlgorithm(hashType)
	if err != nil {
		return nil, malformed("%v", err)
	}
	m.Serialization.HashType = alg
	if len(ser.AllowSymlinks) > 0 {
		switch strings.ToLower(strings.Trim(string(ser.AllowSymlinks), `"`)) {
		case "true":
			m.Serialization.AllowSymlinks = true
		case "false":
		default:
			return nil, malformed("allow_symlinks %s is not a boolean", ser.AllowSymlinks)
		}
	}
	if ser.IgnorePaths != nil {
		m.Serialization.IgnorePaths = []string{}
		for _, p := range ser.IgnorePaths {
			if len(p) > MaxNameLength {
				return nil, malformed("ignore path of %d bytes", len(p))
			}
			m.Serialization.IgnorePaths = append(m.Serialization.IgnorePaths, p)
		}
	}
	wantAlg := string(alg)
	if ser.Method == MethodShards {
		wantAlg = ShardAlgorithm(alg, m.Serialization.ShardSize)
	}
	m.Resources = make([]Resource, 0, len(st.Predicate.Resources))
	seen := make(map[string]bool, len(st.Predicate.Resources))
	for _, r := range st.Predicate.Resources {
		if len(r.Name) > MaxNameLength || r.Name == "" {
			return nil, malformed("resource name of %d bytes", len(r.Name))
		}
		if seen[r.Name] {
			return nil, malformed("resource %q listed twice", r.Name)
		}
		seen[r.Name] = true
		if r.Algorithm != wantAlg && r.Algorithm != string(alg) {
			return nil, malformed("resource %q: algorithm %q, want %q", r.Name, r.Algorithm, wantAlg)
		}
		if len(r.Digest) > 2*MaxDigestLength {
			return nil, malformed("resource %q: digest of %d characters", r.Name, len(r.Digest))
		}
		d, err := hex.DecodeString(r.Digest)
		if err != nil || len(d) != alg.Size() {
			return nil, malformed("resource %q: digest %q is not a %d-byte hex %s digest", r.Name, r.Digest, alg.Size(), alg)
		}
		if ser.Method == MethodShards {
			if _, _, _, err := ParseShardName(r.Name); err != nil {
				return nil, malformed("%v", err)
			}
		}
		m.Resources = append(m.Resources, Resource{Name: r.Name, Algorithm: r.Algorithm, Digest: d})
	}
	if got := hex.EncodeToString(m.RootDigest()); !strings.EqualFold(got, want) {
		return nil, malformed("manifest is inconsistent: the subject's root digest is %s but the resources hash to %s", want, got)
	}
	return m, nil
}

func parseShardSize(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 {
		return 0, malformed("shards serialization without shard_size")
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f != math.Trunc(f) || f <= 0 || f > 1<<53 {
		return 0, malformed("shard_size %s is not a positive integer", raw)
	}
	return int64(f), nil
}

func parseV01(st *rawStatement) (*Manifest, error) {
	m := &Manifest{
		ModelName:     LegacyModelName,
		Legacy:        true,
		Serialization: Serialization{Method: MethodFiles, HashType: digest.SHA256},
	}
	seen := map[string]bool{}
	for _, s := range st.Subject {
		if len(s.Name) > MaxNameLength || s.Name == "" {
			return nil, malformed("subject name of %d bytes", len(s.Name))
		}
		if seen[s.Name] {
			return nil, malformed("subject %q listed twice", s.Name)
		}
		seen[s.Name] = true
		h, ok := s.Digest["sha256"]
		if !ok || len(h) != 64 {
			return nil, malformed("subject %q has no sha256 digest", s.Name)
		}
		d, err := hex.DecodeString(h)
		if err != nil {
			return nil, malformed("subject %q: %v", s.Name, err)
		}
		m.Resources = append(m.Resources, Resource{Name: s.Name, Algorithm: string(digest.SHA256), Digest: d})
	}
	if len(m.Resources) == 0 {
		return nil, malformed("v0.1 statement without subjects")
	}
	return m, nil
}
