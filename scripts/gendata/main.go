// Command gendata deterministically writes a synthetic benchmark data set
// ("the 1 GiB mixed set") into a directory:
//
//	big/random.bin   one incompressible file (512 MiB)
//	text/            ~256 MiB of compressible log/prose text in ~200 files
//	small/           20,000 small files (0..16 KiB) in nested dirs, plus
//	                 a few empty files and empty dirs
//	dup/             exact copies of some text files and of ~2,000 small
//	                 files, filling the set up to ~1 GiB
//
// Usage:
//
//	go run ./scripts/gendata -out DIR [-seed N] [-scale F]
//
// -scale multiplies every size and count (0.05 gives a ~51 MiB smoke-test
// set). The same seed and scale always produce byte-identical files with
// identical mtimes.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30

	bigSize       = 512 * mib
	textTotal     = 256 * mib
	textFiles     = 200
	smallFiles    = 20000
	smallMax      = 16 * kib
	filesPerDir   = 100
	dupSmallFiles = 2000
	setTotal      = 1 * gib
	emptyDirs     = 5
)

// fixedTime is the mtime given to every generated file and directory.
var fixedTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

type gen struct {
	out   string
	seed  uint64
	files int64
	bytes int64
}

// rng returns an independent deterministic stream for one part of the set,
// so changing one part never changes another.
func (g *gen) rng(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(g.seed, stream*0x9E3779B97F4A7C15+1))
}

func (g *gen) chacha(stream uint64) *rand.ChaCha8 {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(g.seed >> (8 * i))
		key[8+i] = byte(stream >> (8 * i))
	}
	copy(key[16:], "coffer-gendata!!")
	return rand.NewChaCha8(key)
}

func main() {
	out := flag.String("out", "", "output directory (created; must be empty or absent)")
	seed := flag.Uint64("seed", 1, "random seed")
	scale := flag.Float64("scale", 1, "multiplier for all sizes and counts")
	flag.Parse()
	if *out == "" || *scale <= 0 || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: gendata -out DIR [-seed N] [-scale F]")
		os.Exit(2)
	}
	if ents, err := os.ReadDir(*out); err == nil && len(ents) > 0 {
		fatal(fmt.Errorf("%s is not empty", *out))
	}
	start := time.Now()
	g := &gen{out: *out, seed: *seed}
	if err := g.run(*scale); err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "gendata: %s: %d files, %d bytes (%.1f MiB), seed %d, scale %g, %.1fs\n",
		*out, g.files, g.bytes, float64(g.bytes)/mib, *seed, *scale, time.Since(start).Seconds())
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "gendata:", err)
	os.Exit(1)
}

func scaled(n int64, scale float64) int64 {
	return int64(math.Round(float64(n) * scale))
}

func (g *gen) run(scale float64) error {
	// big/random.bin
	if err := g.writeRandom(filepath.Join(g.out, "big", "random.bin"), scaled(bigSize, scale), g.chacha(1)); err != nil {
		return err
	}

	// text/
	textPaths, textSizes, err := g.writeText(scaled(textTotal, scale), max(1, int(scaled(textFiles, scale))))
	if err != nil {
		return err
	}

	// small/
	smallPaths, err := g.writeSmall(max(1, int(scaled(smallFiles, scale))))
	if err != nil {
		return err
	}

	// dup/small: copies of every k-th small file.
	nDup := max(1, int(scaled(dupSmallFiles, scale)))
	step := max(1, len(smallPaths)/nDup)
	for i := 0; i < len(smallPaths) && i/step < nDup; i += step {
		rel, _ := filepath.Rel(filepath.Join(g.out, "small"), smallPaths[i])
		if err := g.copyFile(smallPaths[i], filepath.Join(g.out, "dup", "small", rel)); err != nil {
			return err
		}
	}

	// dup/text: whole copies of text files (a slice from the middle of the
	// list, so a mix of sizes) until the set reaches its total.
	want := scaled(setTotal, scale) - g.bytes
	var copied int64
	for i := 0; i < len(textPaths) && copied < want; i++ {
		j := (i + len(textPaths)/3) % len(textPaths)
		if copied+textSizes[j] > want+want/8 {
			continue // would overshoot too much; try a smaller one
		}
		dst := filepath.Join(g.out, "dup", "text", filepath.Base(textPaths[j]))
		if err := g.copyFile(textPaths[j], dst); err != nil {
			return err
		}
		copied += textSizes[j]
	}

	return g.fixDirTimes()
}

func (g *gen) create(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
}

func (g *gen) finish(f *os.File, n int64) error {
	if err := f.Close(); err != nil {
		return err
	}
	g.files++
	g.bytes += n
	return os.Chtimes(f.Name(), fixedTime, fixedTime)
}

// writeRandom streams size random bytes to path through a 1 MiB buffer.
func (g *gen) writeRandom(path string, size int64, src io.Reader) error {
	f, err := g.create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, mib)
	for left := size; left > 0; {
		n := int(min(left, int64(len(buf))))
		src.Read(buf[:n]) // ChaCha8.Read never fails
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= int64(n)
	}
	return g.finish(f, size)
}

// writeText writes count files summing to total bytes, with sizes spread
// log-uniformly over three orders of magnitude.
func (g *gen) writeText(total int64, count int) ([]string, []int64, error) {
	r := g.rng(2)
	weights := make([]float64, count)
	var sum float64
	for i := range weights {
		weights[i] = math.Exp(r.Float64() * math.Log(1000))
		sum += weights[i]
	}
	paths := make([]string, count)
	sizes := make([]int64, count)
	var done int64
	for i := range count {
		size := int64(float64(total) * weights[i] / sum)
		if i == count-1 {
			size = total - done
		}
		done += size
		ext := ".log"
		if i%4 == 3 {
			ext = ".txt"
		}
		paths[i] = filepath.Join(g.out, "text", fmt.Sprintf("t%03d%s", i, ext))
		sizes[i] = size
		f, err := g.create(paths[i])
		if err != nil {
			return nil, nil, err
		}
		w := bufio.NewWriterSize(f, mib)
		tg := newTextGen(g.rng(1000+uint64(i)), ext == ".log")
		if err := tg.write(w, size); err != nil {
			f.Close()
			return nil, nil, err
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return nil, nil, err
		}
		if err := g.finish(f, size); err != nil {
			return nil, nil, err
		}
	}
	return paths, sizes, nil
}

// writeSmall writes count files of 0..16 KiB, ~100 per directory, nested
// two levels deep, and a few empty directories. It returns the file paths.
func (g *gen) writeSmall(count int) ([]string, error) {
	r := g.rng(3)
	nDirs := (count + filesPerDir - 1) / filesPerDir
	fanout := max(1, int(math.Ceil(math.Sqrt(float64(nDirs)))))
	paths := make([]string, 0, count)
	buf := make([]byte, smallMax)
	for i := range count {
		d := i / filesPerDir
		dir := filepath.Join(g.out, "small", fmt.Sprintf("d%02d", d/fanout), fmt.Sprintf("d%02d", d%fanout))
		var size int
		if i%997 != 0 { // every 997th file is empty
			size = r.IntN(smallMax + 1)
		}
		text := r.IntN(2) == 0
		ext := ".bin"
		if text {
			ext = ".txt"
		}
		path := filepath.Join(dir, fmt.Sprintf("f%05d%s", i, ext))
		f, err := g.create(path)
		if err != nil {
			return nil, err
		}
		b := buf[:size]
		if text {
			tg := newTextGen(r, i%3 == 0)
			b = tg.fill(b[:0], size)
		} else {
			for j := 0; j+8 <= len(b); j += 8 {
				v := r.Uint64()
				for k := range 8 {
					b[j+k] = byte(v >> (8 * k))
				}
			}
			for j := len(b) &^ 7; j < len(b); j++ {
				b[j] = byte(r.Uint32())
			}
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return nil, err
		}
		if err := g.finish(f, int64(size)); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	for i := range emptyDirs {
		var dir string
		if i%2 == 0 {
			dir = filepath.Join(g.out, "small", fmt.Sprintf("empty%d", i))
		} else {
			dir = filepath.Join(g.out, "small", "d00", fmt.Sprintf("empty%d", i), "nested")
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

func (g *gen) copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := g.create(dst)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, in)
	if err != nil {
		out.Close()
		return err
	}
	return g.finish(out, n)
}

// fixDirTimes gives every directory the fixed mtime, deepest first.
func (g *gen) fixDirTimes() error {
	var dirs []string
	err := filepath.WalkDir(g.out, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(dirs[i], fixedTime, fixedTime); err != nil {
			return err
		}
	}
	return nil
}

// --- text generation -------------------------------------------------------

var (
	levels  = []string{"INFO ", "INFO ", "INFO ", "DEBUG", "DEBUG", "WARN ", "ERROR"}
	comps   = []string{"api", "db", "cache", "auth", "scheduler", "worker", "http", "storage", "queue", "mailer"}
	verbs   = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	routes  = []string{"/api/v1/users", "/api/v1/orders", "/api/v1/items", "/api/v2/search", "/static/img", "/healthz", "/api/v1/sessions", "/api/v2/reports"}
	msgs    = []string{"request handled", "cache miss", "cache hit", "slow query", "connection reset by peer", "retrying operation", "job finished", "token refreshed", "rate limit exceeded", "payload validated"}
	users   = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar", "peggy", "trent", "victor", "walter"}
	statusC = []int{200, 200, 200, 200, 201, 204, 301, 304, 400, 401, 403, 404, 404, 500, 503}
	words   = []string{
		"the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "this", "are",
		"or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her",
		"has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "backup", "archive", "storage", "snapshot",
		"chunk", "index", "repository", "network", "system", "process", "memory", "disk", "file", "directory", "version", "record",
		"number", "value", "table", "report", "service", "client", "server", "request", "response", "window", "morning", "evening",
		"river", "mountain", "village", "garden", "letter", "journey", "history", "science", "language", "question", "answer",
	}
)

type textGen struct {
	r    *rand.Rand
	logs bool
	ts   int64 // unix milliseconds for log lines
	line []byte
}

func newTextGen(r *rand.Rand, logs bool) *textGen {
	return &textGen{r: r, logs: logs, ts: 1704067200000 + r.Int64N(300*86400*1000)}
}

func (t *textGen) nextLine(b []byte) []byte {
	r := t.r
	if !t.logs {
		n := 6 + r.IntN(14)
		for i := range n {
			w := words[r.IntN(len(words))]
			if i == 0 {
				b = append(b, w[0]-'a'+'A')
				b = append(b, w[1:]...)
			} else {
				b = append(b, ' ')
				if r.IntN(25) == 0 {
					b = strconv.AppendInt(b, int64(r.IntN(10000)), 10)
					b = append(b, ' ')
				}
				b = append(b, w...)
			}
		}
		if r.IntN(3) == 0 {
			return append(b, ".\n\n"...)
		}
		return append(b, ".\n"...)
	}
	t.ts += int64(r.IntN(250))
	b = time.UnixMilli(t.ts).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, ' ')
	b = append(b, levels[r.IntN(len(levels))]...)
	b = append(b, " ["...)
	b = append(b, comps[r.IntN(len(comps))]...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(r.IntN(16)), 10)
	b = append(b, "] "...)
	b = append(b, msgs[r.IntN(len(msgs))]...)
	b = append(b, " method="...)
	b = append(b, verbs[r.IntN(len(verbs))]...)
	b = append(b, " path="...)
	b = append(b, routes[r.IntN(len(routes))]...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(r.IntN(5000)), 10)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(statusC[r.IntN(len(statusC))]), 10)
	b = append(b, " duration_ms="...)
	b = strconv.AppendInt(b, int64(r.IntN(40)*r.IntN(40)), 10)
	b = append(b, " user="...)
	b = append(b, users[r.IntN(len(users))]...)
	if r.IntN(4) == 0 {
		b = append(b, " bytes="...)
		b = strconv.AppendInt(b, int64(r.IntN(1<<16)), 10)
	}
	return append(b, '\n')
}

// fill appends exactly size bytes of text to b.
func (t *textGen) fill(b []byte, size int) []byte {
	for len(b) < size {
		t.line = t.nextLine(t.line[:0])
		n := min(len(t.line), size-len(b))
		b = append(b, t.line[:n]...)
	}
	return b
}

// write writes exactly size bytes of text to w.
func (t *textGen) write(w *bufio.Writer, size int64) error {
	for size > 0 {
		t.line = t.nextLine(t.line[:0])
		n := min(int64(len(t.line)), size)
		if _, err := w.Write(t.line[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}
