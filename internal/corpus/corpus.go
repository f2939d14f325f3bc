// Package corpus generates, deterministically and without the network, a
// set of files that looks like what fills real buckets, one class at a
// time: JSON logs, CSV, source code (Go's own tree), plain text, and
// already-compressed media (JPEG, gzip, a parquet-like columnar file with
// zstd pages). The compression choice (engine/format, docs/PERFORMANCE.md
// "Issue 10: compression") is measured on it; scripts/corpus writes it to
// a folder for the whole-process comparison with restic.
//
// The same seed and size give the same bytes, except for the source class,
// which is the sorted .go files of the Go tree the program runs with.
package corpus

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"image"
	"image/jpeg"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Class is one kind of content.
type Class string

const (
	JSONLogs Class = "jsonlogs" // one JSON object a line, like a service's logs
	CSV      Class = "csv"      // tables of ids, dates, numbers and categories
	Source   Class = "source"   // Go's source tree, file by file
	Text     Class = "text"     // prose-like text
	JPEG     Class = "jpeg"     // photos: JPEG-coded noisy gradients
	Gzip     Class = "gzip"     // gzip-compressed logs and CSV
	Columnar Class = "columnar" // parquet-like: zstd-compressed column pages
)

// Classes lists every class, compressible ones first.
var Classes = []Class{JSONLogs, CSV, Source, Text, JPEG, Gzip, Columnar}

// Compressible says whether a general-purpose compressor should shrink
// the class noticeably.
func (c Class) Compressible() bool {
	switch c {
	case JPEG, Gzip, Columnar:
		return false
	}
	return true
}

// File is one generated file.
type File struct {
	Name string // slash-separated, relative to the class folder
	Data []byte
}

// Generate returns about size bytes of class c (at least one file; the
// last file may overshoot). Source needs Go's tree (GOROOT/src).
func Generate(c Class, seed uint64, size int) ([]File, error) {
	g := &gen{r: rand.New(rand.NewPCG(seed, uint64(len(c))*0x9E3779B97F4A7C15+hash(string(c))))}
	switch c {
	case JSONLogs:
		return g.files(size, 256<<10, 8<<20, "app-%03d.log", g.jsonLogs), nil
	case CSV:
		fs := []File{{Name: "seq.txt", Data: Seq(100000)}}
		return append(fs, g.files(size-len(fs[0].Data), 128<<10, 8<<20, "table-%03d.csv", g.csv)...), nil
	case Source:
		return goSource(size)
	case Text:
		return g.files(size, 4<<10, 2<<20, "doc-%03d.txt", g.text), nil
	case JPEG:
		return g.files(size, 0, 0, "img-%04d.jpg", func(int) []byte { return g.jpeg() }), nil
	case Gzip:
		return g.files(size, 256<<10, 4<<20, "export-%03d.gz", g.gzip), nil
	case Columnar:
		return g.files(size, 1<<20, 8<<20, "part-%03d.parquet", g.columnar), nil
	}
	return nil, fmt.Errorf("corpus: unknown class %q", c)
}

func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// Seq is the output of `seq 1 n`.
func Seq(n int) []byte {
	var b []byte
	for i := 1; i <= n; i++ {
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, '\n')
	}
	return b
}

type gen struct {
	r *rand.Rand
}

// files calls make with a target size between lo and hi (log-uniform)
// until size bytes are out; lo == 0 lets make choose.
func (g *gen) files(size, lo, hi int, name string, make func(int) []byte) []File {
	var out []File
	for total := 0; total < size || len(out) == 0; {
		n := 0
		if lo > 0 {
			n = int(math.Exp(math.Log(float64(lo)) + g.r.Float64()*(math.Log(float64(hi))-math.Log(float64(lo)))))
			n = min(n, max(size-total, lo))
		}
		d := make(n)
		out = append(out, File{Name: fmt.Sprintf(name, len(out)), Data: d})
		total += len(d)
	}
	return out
}

func (g *gen) hex(b []byte, n int) []byte {
	const digits = "0123456789abcdef"
	for range n {
		b = append(b, digits[g.r.IntN(16)])
	}
	return b
}

func (g *gen) pick(s []string) string { return s[g.r.IntN(len(s))] }

// zipf picks from s with a Zipf-like skew (the first items most often).
func (g *gen) zipf(s []string) string {
	i := int(float64(len(s)) * math.Pow(g.r.Float64(), 3))
	return s[min(i, len(s)-1)]
}

var (
	levels   = []string{"info", "info", "info", "info", "debug", "debug", "warn", "error"}
	services = []string{"api", "auth", "billing", "search", "ingest", "worker", "gateway"}
	methods  = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	routes   = []string{"/v1/items", "/v1/items/%d", "/v1/users/%d", "/v1/orders", "/v1/orders/%d/lines", "/healthz", "/v2/search", "/v1/sessions"}
	messages = []string{"request done", "cache miss", "cache hit", "retrying upstream", "slow query", "token refreshed",
		"user not found", "payment accepted", "rate limited", "connection reset by peer", "job finished", "job started"}
	regions = []string{"eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-1"}
	skus    = []string{"A-1001", "A-1002", "B-2001", "B-2002", "B-2003", "C-3001", "D-4001", "D-4002", "E-5001"}
)

func (g *gen) jsonLogs(n int) []byte {
	b := make([]byte, 0, n+512)
	t := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(g.r.IntN(1e6)) * time.Second)
	for len(b) < n {
		t = t.Add(time.Duration(g.r.ExpFloat64() * float64(40*time.Millisecond)))
		route := g.zipf(routes)
		if strings.Contains(route, "%d") {
			route = fmt.Sprintf(route, g.r.IntN(100000))
		}
		status := 200
		switch x := g.r.IntN(100); {
		case x < 3:
			status = 500
		case x < 10:
			status = 404
		case x < 15:
			status = 201
		}
		b = append(b, `{"ts":"`...)
		b = t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, `","level":"`...)
		b = append(b, g.pick(levels)...)
		b = append(b, `","service":"`...)
		b = append(b, g.zipf(services)...)
		b = append(b, `","msg":"`...)
		b = append(b, g.zipf(messages)...)
		b = append(b, `","method":"`...)
		b = append(b, g.pick(methods)...)
		b = append(b, `","path":"`...)
		b = append(b, route...)
		b = append(b, `","status":`...)
		b = strconv.AppendInt(b, int64(status), 10)
		b = append(b, `,"duration_ms":`...)
		b = strconv.AppendFloat(b, g.r.ExpFloat64()*30, 'f', 3, 64)
		b = append(b, `,"bytes":`...)
		b = strconv.AppendInt(b, int64(g.r.IntN(65536)), 10)
		b = append(b, `,"request_id":"`...)
		b = g.hex(b, 32)
		b = append(b, `","user_id":`...)
		b = strconv.AppendInt(b, int64(g.r.IntN(50000)), 10)
		b = append(b, `,"region":"`...)
		b = append(b, g.zipf(regions)...)
		b = append(b, "\"}\n"...)
	}
	return b
}

func (g *gen) csv(n int) []byte {
	b := make([]byte, 0, n+256)
	b = append(b, "id,date,sku,qty,unit_price,total,region,customer,status\n"...)
	id := g.r.IntN(1e6)
	day := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	for len(b) < n {
		id += 1 + g.r.IntN(3)
		if g.r.IntN(200) == 0 {
			day = day.AddDate(0, 0, 1)
		}
		qty := 1 + g.r.IntN(20)
		price := float64(100+g.r.IntN(99900)) / 100
		b = strconv.AppendInt(b, int64(id), 10)
		b = append(b, ',')
		b = day.AppendFormat(b, "2006-01-02")
		b = append(b, ',')
		b = append(b, g.zipf(skus)...)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(qty), 10)
		b = append(b, ',')
		b = strconv.AppendFloat(b, price, 'f', 2, 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, price*float64(qty), 'f', 2, 64)
		b = append(b, ',')
		b = append(b, g.zipf(regions)...)
		b = append(b, ",C"...)
		b = strconv.AppendInt(b, int64(g.r.IntN(20000)), 10)
		b = append(b, ',')
		b = append(b, g.zipf([]string{"shipped", "delivered", "pending", "returned", "cancelled"})...)
		b = append(b, '\n')
	}
	return b
}

// vocabulary is a deterministic list of pseudo-words built from syllables.
func (g *gen) vocabulary(n int) []string {
	syl := []string{"a", "an", "ar", "be", "ca", "de", "di", "el", "en", "er", "es", "fa", "ga", "he", "i", "in", "is",
		"ka", "la", "le", "li", "ma", "me", "mi", "na", "ne", "no", "o", "on", "or", "pa", "pe", "ra", "re", "ri", "ro",
		"sa", "se", "si", "so", "ta", "te", "th", "ti", "to", "u", "un", "ur", "va", "ve", "wa", "we", "ya", "ze"}
	short := []string{"the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "this"}
	out := append([]string(nil), short...)
	for len(out) < n {
		k := 1 + g.r.IntN(4)
		var w strings.Builder
		for range k {
			w.WriteString(g.pick(syl))
		}
		out = append(out, w.String())
	}
	return out
}

func (g *gen) text(n int) []byte {
	words := g.vocabulary(8000)
	b := make([]byte, 0, n+256)
	for len(b) < n {
		sentences := 3 + g.r.IntN(6)
		for s := range sentences {
			k := 5 + g.r.IntN(20)
			for i := range k {
				w := g.zipf(words)
				if i == 0 {
					w = strings.ToUpper(w[:1]) + w[1:]
				}
				b = append(b, w...)
				switch {
				case i == k-1:
					b = append(b, g.pick([]string{".", ".", ".", "?", "!"})...)
				case g.r.IntN(12) == 0:
					b = append(b, ',')
				}
				if i < k-1 {
					b = append(b, ' ')
				}
			}
			if s < sentences-1 {
				b = append(b, ' ')
			}
		}
		b = append(b, "\n\n"...)
	}
	return b
}

// jpeg is a photo-sized JPEG of smooth gradients with sensor-like noise.
func (g *gen) jpeg() []byte {
	w, h := 640+g.r.IntN(640), 480+g.r.IntN(480)
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	fx, fy := g.r.Float64()*0.02, g.r.Float64()*0.02
	for y := range h {
		for x := range w {
			v := 128 + 90*math.Sin(float64(x)*fx+float64(y)*fy) + g.r.NormFloat64()*12
			img.Y[y*img.YStride+x] = uint8(max(0, min(255, v)))
		}
	}
	for y := range h / 2 {
		for x := range w / 2 {
			i := y*img.CStride + x
			img.Cb[i] = uint8(128 + 40*math.Cos(float64(x)*fy) + g.r.NormFloat64()*4)
			img.Cr[i] = uint8(128 + 40*math.Sin(float64(y)*fx) + g.r.NormFloat64()*4)
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80 + g.r.IntN(15)}); err != nil {
		panic(err) // writing to memory
	}
	return buf.Bytes()
}

// gzip is gzip-compressed logs or CSV of about n bytes compressed.
func (g *gen) gzip(n int) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	for buf.Len() < n {
		if g.r.IntN(2) == 0 {
			zw.Write(g.jsonLogs(1 << 20))
		} else {
			zw.Write(g.csv(1 << 20))
		}
	}
	zw.Close()
	return buf.Bytes()
}

// columnar is parquet-like: "PAR1", pages of one column each compressed
// with zstd (parquet's usual codec), a footer of page offsets, "PAR1".
func (g *gen) columnar(n int) []byte {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	defer enc.Close()
	out := []byte("PAR1")
	var offsets []uint64
	const rows = 16384
	id := uint64(g.r.IntN(1e9))
	col := make([]byte, 0, rows*8)
	for len(out) < n {
		for c := range 5 {
			col = col[:0]
			for range rows {
				switch c {
				case 0: // ids, increasing
					id += uint64(1 + g.r.IntN(5))
					col = binary.LittleEndian.AppendUint64(col, id)
				case 1: // timestamps in ms
					col = binary.LittleEndian.AppendUint64(col, uint64(1.7e12)+uint64(g.r.IntN(1e9)))
				case 2: // prices
					col = binary.LittleEndian.AppendUint64(col, math.Float64bits(float64(g.r.IntN(1e6))/100))
				case 3: // measurements
					col = binary.LittleEndian.AppendUint64(col, math.Float64bits(g.r.NormFloat64()*1e3))
				case 4: // dictionary codes
					col = binary.LittleEndian.AppendUint16(col, uint16(g.r.IntN(300)))
				}
			}
			offsets = append(offsets, uint64(len(out)))
			out = enc.EncodeAll(col, out)
		}
	}
	foot := len(out)
	for _, o := range offsets {
		out = binary.LittleEndian.AppendUint64(out, o)
	}
	out = binary.LittleEndian.AppendUint32(out, uint32(len(out)-foot))
	return append(out, "PAR1"...)
}

// goSource returns the .go files of GOROOT/src in path order until size.
func goSource(size int) ([]File, error) {
	root := os.Getenv("GOROOT")
	if root == "" {
		root = runtime.GOROOT()
	}
	src := filepath.Join(root, "src")
	var paths []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".go") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("corpus: Go's source tree (set GOROOT): %w", err)
	}
	sort.Strings(paths)
	var out []File
	total := 0
	for _, p := range paths {
		if total >= size {
			break
		}
		d, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("corpus: %w", err)
		}
		rel, _ := filepath.Rel(src, p)
		out = append(out, File{Name: filepath.ToSlash(rel), Data: d})
		total += len(d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("corpus: no .go files under %s (set GOROOT)", src)
	}
	return out, nil
}
