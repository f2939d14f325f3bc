package main

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/repair"
	"github.com/coffer-backup/coffer/internal/config"
)

// jsonOutputs are what each command prints with --json, for docs/cli.md:
// the schemas are read from the types themselves, so they cannot drift.
var jsonOutputs = []struct {
	cmd, shape string
	t          reflect.Type
}{
	{"backup", "one object per source, one per line", reflect.TypeOf(backupOut{})},
	{"ls", "an array of snapshots", reflect.TypeOf(snapshotOut{})},
	{"ls ID[:/PATH]", "an array of entries", reflect.TypeOf(entryOut{})},
	{"restore", "one object", reflect.TypeOf(restoreOut{})},
	{"check", "one object", reflect.TypeOf(checkOut{})},
	{"info", "one object", reflect.TypeOf(engine.StoreInfo{})},
	{"tag", "an array of the snapshots changed", reflect.TypeOf(tagOut{})},
	{"forget", "one object: the policy, and for each group the snapshots kept (with the rules that keep them) and removed; with --prune, what prune did", reflect.TypeOf(forgetOut{})},
	{"rm", "one object", reflect.TypeOf(rmOut{})},
	{"prune", "one object: packs and bytes deleted, repacked, kept, and those waiting (and for whom)", reflect.TypeOf(engine.PruneResult{})},
	{"repair index", "one object", reflect.TypeOf(repair.IndexResult{})},
	{"repair packs", "one object", reflect.TypeOf(repair.PacksResult{})},
	{"repair snapshots", "one object", reflect.TypeOf(repair.SnapshotsResult{})},
	{"passphrase ls", "an array of key slots", reflect.TypeOf(slotOut{})},
	{"config KIND show NAME", "one object: the entry's settings, secrets masked", reflect.TypeOf(config.Entry{})},
	{"config KIND ls", "an object: name → the entry's settings, secrets masked", reflect.TypeOf(map[string]config.Entry{})},
}

// writeJSONDocs writes the "JSON output" section of docs/cli.md.
func writeJSONDocs(b *strings.Builder) {
	b.WriteString("## JSON output\n\n")
	b.WriteString("With `--json`, a command prints JSON Lines: each value on one line (a backup of several sources, one per source), so output streams and parses line by line. Fields marked *optional* are left out when empty. Times are RFC 3339; sizes are bytes.\n\n")
	for _, o := range jsonOutputs {
		fmt.Fprintf(b, "### `--json` of `coffer %s`\n\n%s", o.cmd, strings.ToUpper(o.shape[:1])+o.shape[1:])
		if o.t.Kind() == reflect.Struct {
			if strings.HasPrefix(o.shape, "one object") && !strings.Contains(o.shape, "per") {
				b.WriteString(", with:\n\n")
			} else {
				b.WriteString(", each with:\n\n")
			}
			writeFields(b, o.t, "")
		} else {
			b.WriteString(".\n")
		}
		b.WriteString("\n")
	}
}

func writeFields(b *strings.Builder, t reflect.Type, indent string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() && !(f.Anonymous && name == "") {
			continue
		}
		if name == "-" {
			continue
		}
		ft := f.Type
		if f.Anonymous && name == "" { // embedded: its fields are inline
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			writeFields(b, ft, indent)
			continue
		}
		if name == "" {
			name = f.Name
		}
		opt := ""
		if strings.Contains(opts, "omitempty") {
			opt = ", optional"
		}
		fmt.Fprintf(b, "%s- `%s` (%s%s)\n", indent, name, jsonType(ft), opt)
		if st := structOf(ft); st != nil && st != reflect.TypeOf(time.Time{}) {
			writeFields(b, st, indent+"  ")
		}
	}
}

// structOf is the struct a field holds (directly, by pointer or in an
// array), whose fields are listed below it.
func structOf(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct && t != reflect.TypeOf(time.Time{}) {
		if _, ok := reflect.New(t).Interface().(interface{ MarshalText() ([]byte, error) }); ok {
			return nil
		}
		return t
	}
	return nil
}

func jsonType(t reflect.Type) string {
	if t == reflect.TypeOf(time.Time{}) {
		return "string, RFC 3339 time"
	}
	if _, ok := reflect.New(t).Interface().(interface{ MarshalText() ([]byte, error) }); ok {
		return "string"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonType(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "string (base64)"
		}
		return "array of " + jsonType(t.Elem())
	case reflect.Map:
		return "object of " + jsonType(t.Elem())
	case reflect.Struct:
		if t == reflect.TypeOf(time.Time{}) {
			return "string, RFC 3339 time"
		}
		return "object"
	case reflect.Interface:
		return "any"
	}
	return t.Kind().String()
}
