package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
)

// On a terminal the view draws objects, bytes, MB/s, a bar and an ETA,
// and clears its line when done; with -q or off a terminal it draws
// nothing.
// onTerminal runs draw with progress going to a pseudo-terminal of cols
// columns and returns what was drawn.
func onTerminal(t *testing.T, cols uint16, draw func()) string {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skip("no pty:", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: cols})
	saved := progressOut
	defer func() { progressOut, stderrTerminal, quiet = saved, false, false }()
	progressOut, stderrTerminal, quiet = tty, true, false

	var out bytes.Buffer
	read := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(read) }()
	draw()
	tty.Close()
	select {
	case <-read:
	case <-time.After(2 * time.Second):
	}
	return out.String()
}

// drawSteps starts a view towards goal and adds objects and bytes steps
// times, 100 ms apart.
func drawSteps(verb string, goal progressGoal, steps int, objects, bytes int64) {
	pr := &engine.Progress{}
	v := startProgress(verb, pr, goal)
	for i := 1; i <= steps; i++ {
		pr.Files.Add(objects)
		pr.Bytes.Add(bytes)
		time.Sleep(100 * time.Millisecond)
	}
	v.done()
}

func TestProgressView(t *testing.T) {
	s := onTerminal(t, 160, func() { drawSteps("restore", progressGoal{Objects: 10, Bytes: 100 << 20}, 8, 1, 10<<20) })
	for _, want := range []string{"restore", "objects", "MiB / 100 MiB", "MB/s", "ETA", "["} {
		if !strings.Contains(s, want) {
			t.Fatalf("progress lacks %q:\n%q", want, s)
		}
	}

	// Off a terminal, or with -q: nothing.
	pr := &engine.Progress{}
	defer func() { stderrTerminal, quiet = false, false }()
	stderrTerminal = false
	if v := startProgress("backup", pr, progressGoal{}); v.p != nil {
		t.Fatal("a view draws off a terminal")
	}
	stderrTerminal, quiet = true, true
	if v := startProgress("backup", pr, progressGoal{}); v.p != nil {
		t.Fatal("a view draws under -q")
	}
}

// On a narrow terminal (50 columns) no drawn line is wider than the
// terminal, so none wraps and garbles the screen.
func TestProgressViewNarrow(t *testing.T) {
	out := onTerminal(t, 50, func() { drawSteps("backup", progressGoal{Objects: 123456, Bytes: 100 << 30}, 6, 12345, 3<<30) })
	ansi := regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)
	drawn := 0
	for _, line := range strings.FieldsFunc(ansi.ReplaceAllString(out, "\n"), func(r rune) bool { return r == '\n' || r == '\r' }) {
		if n := len([]rune(line)); n > 50 {
			t.Fatalf("a %d-column progress line on a 50-column terminal: %q", n, line)
		}
		if strings.Contains(line, "backup") {
			drawn++
			if strings.Contains(line, "…") {
				t.Fatalf("a progress line cut short on a 50-column terminal: %q", line)
			}
		}
	}
	if drawn == 0 || !strings.Contains(out, "ETA") {
		t.Fatalf("no progress with an ETA on a 50-column terminal: %q", out)
	}
}

// A first backup counts its source ahead: the view gets the number of
// entries and bytes the walk will see, with the backup's exclusions.
func TestScanAhead(t *testing.T) {
	dir := t.TempDir()
	for i, n := range []int{10, 200, 3000} {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint("f", i)), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "skip.tmp"), make([]byte, 5000), 0o644)
	v := &progressView{}
	scanAhead(context.Background(), dir, nil, v)
	if g := v.getGoal(); g.Objects != 6 || g.Bytes != 8210 {
		t.Fatalf("scan found %+v, want 6 entries (root, 4 files, 1 dir) and 8210 bytes", g)
	}
	f := &backup.Filter{}
	if err := f.Exclude.Add("*.tmp", false); err != nil {
		t.Fatal(err)
	}
	v = &progressView{}
	scanAhead(context.Background(), dir, f, v)
	if g := v.getGoal(); g.Objects != 5 || g.Bytes != 3210 {
		t.Fatalf("scan with --exclude '*.tmp' found %+v, want 5 entries and 3210 bytes", g)
	}
	if n := f.Counts(); n.Files != 0 {
		t.Fatalf("the scan counted into the backup's filter: %+v", n)
	}
}
