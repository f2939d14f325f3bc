package fusefs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/engine"
	"github.com/coffer-backup/coffer/engine/backup"
	"github.com/coffer-backup/coffer/engine/tree"
)

// requestCounter counts the FUSE requests that go-fuse's debug log
// shows ("rx 12: LOOKUP n1 ..."), by opcode.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
	part   []byte
	reads  []string // the first READ lines since take, for a failure's message
}

var rxLine = regexp.MustCompile(`\brx \d+: ([A-Z_]+)\b`)

func (c *requestCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.part = append(c.part, p...)
	for {
		i := bytes.IndexByte(c.part, '\n')
		if i < 0 {
			break
		}
		if m := rxLine.FindSubmatch(c.part[:i]); m != nil {
			c.counts[string(m[1])]++
			if string(m[1]) == "READ" && len(c.reads) < 4 {
				c.reads = append(c.reads, string(c.part[:i]))
			}
		}
		c.part = c.part[i+1:]
	}
	return len(p), nil
}

// take returns the counts so far and starts again from zero.
func (c *requestCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.counts
	c.counts, c.reads = map[string]int{}, nil
	return m
}

// readLines returns the first READ lines since take.
func (c *requestCounter) readLines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reads)
}

func (c *requestCounter) String(m map[string]int) string {
	var ops []string
	for op, n := range m {
		ops = append(ops, fmt.Sprintf("%s %d", op, n))
	}
	sort.Strings(ops)
	return strings.Join(ops, ", ")
}

// TestLsFewRequests: ls -lR of a snapshot costs a few FUSE requests per
// folder, not one or more per entry. ls -l asks for security.selinux and
// system.posix_acl_access (and _default for folders) of every entry,
// which the kernel does not cache: answered ENODATA, they were 2 of
// every 2.01 requests (40,666 for 20k entries); EOPNOTSUPP makes ls stop
// asking. The entries' attributes come with READDIRPLUS, so neither
// LOOKUP nor GETATTR is sent per entry either. S3 attributes still read
// as user.s3.*.
func TestLsFewRequests(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	ls, err := exec.LookPath("ls")
	if err != nil {
		t.Skip("no ls")
	}
	r := newRepo(t)
	src := &memSource{uri: "s3://bucket/prefix/"}
	src.items = append(src.items, backup.Item{Path: "", Node: tree.Node{Type: tree.TypeDir, Mode: 0o755}})
	const dirs, perDir = 12, 40
	etag := tree.Attr{Key: "etag", Value: []byte(`"0123"`)}
	for d := 0; d < dirs; d++ {
		for i := 0; i < perDir; i++ {
			src.file(fmt.Sprintf("d%02d/f%03d", d, i), []byte(fmt.Sprintf("file %d %d\n", d, i)), etag)
		}
	}
	sn := backupTree(t, r, src)
	r.LoadIndex(context.Background())
	f := New(r, Options{})
	t.Cleanup(f.Close)
	rc := &requestCounter{counts: map[string]int{}}
	mnt := t.TempDir()
	srv, err := Mount(mnt, f.SnapshotsRoot([]*engine.Snapshot{sn}), MountOptions{FsName: "coffer-test", debugLog: log.New(rc, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unmount(srv); srv.Wait() })
	base := filepath.Join(mnt, SnapshotName(sn))
	if _, err := os.Stat(base); err != nil {
		t.Fatal(err)
	}
	rc.take()

	cmd := exec.Command(ls, "-lR", base)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, io.Discard
	if err := cmd.Run(); err != nil {
		t.Fatalf("ls -lR: %v", err)
	}
	files := 0
	for sc := bufio.NewScanner(&out); sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "-r") {
			files++
		}
	}
	if files != dirs*perDir {
		t.Fatalf("ls -lR listed %d files, want %d", files, dirs*perDir)
	}
	got := rc.take()
	t.Logf("ls -lR of %d folders, %d files: %s", dirs+1, files, rc.String(got))
	entries := dirs*perDir + dirs + 1
	total := 0
	for _, n := range got {
		total += n
	}
	// Per folder: OPENDIR, READDIRPLUS until an empty one, RELEASEDIR.
	if x := got["GETXATTR"]; x > 6 {
		t.Errorf("%d GETXATTR for %d entries: ls asks for every entry again", x, entries)
	}
	if n := got["LOOKUP"] + got["GETATTR"]; n > dirs+4 {
		t.Errorf("%d LOOKUP and GETATTR for %d entries", n, entries)
	}
	if total > 6*(dirs+1)+10 {
		t.Errorf("%d requests for %d folders of %d entries", total, dirs+1, entries)
	}

	// The namespaces a snapshot never holds are unsupported; user.* is
	// supported and user.s3.* holds the S3 attributes.
	file := filepath.Join(base, "d00", "f000")
	buf := make([]byte, 256)
	for _, p := range []string{file, filepath.Join(base, "d00"), base, mnt, filepath.Join(mnt, "latest")} {
		for _, name := range []string{"security.selinux", "system.posix_acl_access", "trusted.x", "security.capability"} {
			if _, err := unix.Lgetxattr(p, name, buf); !errors.Is(err, unix.EOPNOTSUPP) {
				t.Errorf("%s: getxattr %s: %v, want EOPNOTSUPP", p, name, err)
			}
		}
		if _, err := unix.Lgetxattr(p, "user.other", buf); !errors.Is(err, unix.ENODATA) {
			t.Errorf("%s: getxattr user.other: %v, want ENODATA", p, err)
		}
	}
	if n, err := unix.Getxattr(file, "user.s3.etag", buf); err != nil || string(buf[:n]) != `"0123"` {
		t.Errorf("getxattr user.s3.etag: %q %v", buf[:n], err)
	}
}
