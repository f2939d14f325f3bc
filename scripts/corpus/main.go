// Command corpus deterministically writes the compression corpus
// (internal/corpus) into a folder, one subfolder per class: jsonlogs,
// csv (with seq.txt, the output of `seq 1 100000`), source (Go's own
// tree), text, jpeg, gzip, columnar (parquet-like, zstd pages).
//
// Usage:
//
//	go run ./scripts/corpus -out DIR [-seed N] [-size BYTES] [-class C,...]
//
// -size is per class (default 32 MiB). The same seed and size always give
// the same bytes, except source, which is the Go tree of the toolchain.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/corpus"
)

// fixedTime is the modification time of every file written.
var fixedTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func main() {
	out := flag.String("out", "", "output directory (created; must be empty or absent)")
	seed := flag.Uint64("seed", 1, "random seed")
	size := flag.Int("size", 32<<20, "bytes per class")
	classes := flag.String("class", "", "comma-separated classes (default: all)")
	flag.Parse()
	if *out == "" || *size <= 0 || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: corpus -out DIR [-seed N] [-size BYTES] [-class C,...]")
		os.Exit(2)
	}
	if ents, err := os.ReadDir(*out); err == nil && len(ents) > 0 {
		fatal(fmt.Errorf("%s is not empty", *out))
	}
	list := corpus.Classes
	if *classes != "" {
		list = nil
		for _, c := range strings.Split(*classes, ",") {
			list = append(list, corpus.Class(c))
		}
	}
	start := time.Now()
	for _, c := range list {
		files, err := corpus.Generate(c, *seed, *size)
		if err != nil {
			fatal(err)
		}
		n := 0
		for _, f := range files {
			p := filepath.Join(*out, string(c), filepath.FromSlash(f.Name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				fatal(err)
			}
			if err := os.WriteFile(p, f.Data, 0o644); err != nil {
				fatal(err)
			}
			if err := os.Chtimes(p, fixedTime, fixedTime); err != nil {
				fatal(err)
			}
			n += len(f.Data)
		}
		fmt.Fprintf(os.Stderr, "corpus: %s: %d files, %d bytes\n", c, len(files), n)
	}
	fmt.Fprintf(os.Stderr, "corpus: %s in %.1fs\n", *out, time.Since(start).Seconds())
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "corpus:", err)
	os.Exit(1)
}
