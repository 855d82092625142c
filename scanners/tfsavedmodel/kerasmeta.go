package tfsavedmodel

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/keras"
)

// MetadataScanner is the scan.Scanner for keras_metadata.pb: a
// SavedMetadata protobuf whose nodes carry each Keras object's config as
// JSON. tf.keras rebuilds the model from these configs when it loads the
// SavedModel, so each goes through the Keras config checker.
type MetadataScanner struct{}

// Format implements scan.Scanner.
func (MetadataScanner) Format() string { return "keras-metadata-pb" }

// Match implements scan.Scanner: a field-1 message whose first tag is a
// SavedObject field (1 to 6). Scan checks the rest.
func (MetadataScanner) Match(head []byte, size int64) bool {
	if len(head) < 3 || head[0] != 0x0a {
		return false
	}
	l, n := protowire.ConsumeVarint(head[1:])
	if n < 0 || l == 0 || l > uint64(size) || 1+n >= len(head) {
		return false
	}
	switch head[1+n] {
	case 0x0a, 0x10, 0x1a, 0x22, 0x2a, 0x32:
		return true
	}
	return false
}

// savedObject is one SavedMetadata node.
type savedObject struct {
	path, identifier string
	meta             field
	hasMeta          bool
}

// Scan implements scan.Scanner.
func (MetadataScanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	s := newSrc(in.R, in.Size, "keras-metadata-pb")
	var objs []savedObject
	isKeras := false
	err := s.fields(0, in.Size, func(f field) error {
		if f.num != 1 || f.typ != protowire.BytesType {
			return scan.ErrNotFormat
		}
		var o savedObject
		err := s.fields(f.at, f.at+f.n, func(g field) error {
			want := protowire.BytesType
			if g.num == 2 {
				want = protowire.VarintType
			}
			if g.num < 1 || g.num > 6 || g.typ != want {
				return scan.ErrNotFormat
			}
			var err error
			switch g.num {
			case 3:
				o.path, err = s.str(g, 1024)
			case 4:
				o.identifier, err = s.str(g, 256)
				if strings.HasPrefix(o.identifier, "_tf_keras_") {
					isKeras = true
				}
			case 5:
				o.meta, o.hasMeta = g, true
			}
			return err
		})
		if err != nil {
			return err
		}
		if len(objs) < 1_000_000 {
			objs = append(objs, o)
		}
		return nil
	})
	if errors.Is(err, scan.ErrNotFormat) || !isKeras {
		return scan.ErrNotFormat
	}
	if err != nil {
		var fe *scan.FormatError
		if errors.As(err, &fe) && len(objs) == 0 {
			return scan.ErrNotFormat
		}
		return err
	}
	layers, classes := 0, ""
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !o.hasMeta || o.meta.n == 0 {
			continue
		}
		if o.meta.n > keras.MaxConfigSize {
			env.Fail(in.At(o.meta.at), fmt.Errorf("keras-metadata-pb: metadata of %s is %d bytes, over the %d-byte limit; not checked", o.path, o.meta.n, keras.MaxConfigSize))
			continue
		}
		doc, err := s.bytes(o.meta.at, int(o.meta.n))
		if err != nil {
			return err
		}
		doc = append([]byte(nil), doc...)
		cfg, err := keras.CheckJSON(doc, env.Policy)
		if err != nil {
			env.Fail(in.At(o.meta.at), fmt.Errorf("keras-metadata-pb: metadata of %s is not valid JSON: %w", o.path, err))
			continue
		}
		for _, h := range cfg.Hits {
			off := int64(-1)
			if h.Off >= 0 {
				off = o.meta.at + h.Off
			}
			env.Report(finding.Finding{Rule: h.Rule, Severity: h.Severity, Location: in.At(off),
				Message: fmt.Sprintf("%s (%s): %s", o.path, o.identifier, h.Message), Global: h.Global, Evidence: h.Evidence})
		}
		if o.path == "root" {
			classes = cfg.ClassName
			if cfg.KerasVersion != "" {
				env.SetMeta(in, "keras.version", cfg.KerasVersion)
			}
		}
		if o.identifier == "_tf_keras_layer" || o.identifier == "_tf_keras_input_layer" || o.identifier == "_tf_keras_rnn_layer" {
			layers++
		}
	}
	env.Noted("keras")
	env.SetMeta(in, "keras.layers", layers)
	env.SetMeta(in, "keras.objects", len(objs))
	if classes != "" {
		env.SetMeta(in, "keras.class_name", classes)
	}
	return nil
}
