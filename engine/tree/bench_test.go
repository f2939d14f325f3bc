package tree

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/coffer-backup/coffer/engine/crypto"
)

// benchEntries is the size of the huge directory of BenchmarkHugeDir.
// Entries are generated as they are added and only the sizes of pages
// are kept, so 10M entries take a few hundred MiB.
var benchEntries = flag.Int("hugedir.entries", 1_000_000, "entries of BenchmarkHugeDir's directory")

// s3Node is entry i like the S3 source writes it: a key, size, mtime, one
// chunk and an ETag. Keys of even i are the directory's; an odd i is an
// entry to insert.
func s3Node(i int) Node {
	name := fmt.Sprintf("host-a-request-%09d.json", i)
	etag := fmt.Sprintf("\"%032x\"", uint64(i)*0x9e3779b97f4a7c15)
	return Node{
		Name: name, Type: TypeFile, Mode: 0o644, MTime: 1_700_000_000_000_000_000 + int64(i)*1_000_000, Size: 4096,
		Chunks: []Chunk{{ID: crypto.Hash([]byte(name)), Size: 4096}},
		Attrs:  []Attr{{Key: "etag", Value: []byte(etag)}},
	}
}

// sizeStore keeps every blob's size and the bytes of directory blobs and
// index pages (not of pages), and counts what loaders read.
type sizeStore struct {
	size       map[crypto.ID]int
	keep       map[crypto.ID][]byte
	saved      []crypto.ID
	loads      int
	loadedSize int
}

func (s *sizeStore) save(p []byte) (crypto.ID, error) {
	id := crypto.Hash(p)
	if _, ok := s.size[id]; !ok {
		s.size[id] = len(p)
		_, errD := DecodeDir(p)
		_, errI := DecodeIndexPage(p)
		if errD == nil || errI == nil {
			s.keep[id] = append([]byte(nil), p...)
		}
	}
	s.saved = append(s.saved, id)
	return id, nil
}

// buildHuge builds the directory of s3Node(0), s3Node(2), … (n entries),
// with s3Node(extra) too if extra is odd.
func buildHuge(b *testing.B, s *sizeStore, version, n, extra int) crypto.ID {
	s.saved = s.saved[:0]
	bl := NewBuilder(s.save, version)
	for i := 0; i < 2*n; i++ {
		if i%2 == 1 && i != extra {
			continue
		}
		nd := s3Node(i)
		if err := bl.Add(&nd, DirStats{}); err != nil {
			b.Fatal(err)
		}
	}
	id, _, err := bl.Finish()
	if err != nil {
		b.Fatal(err)
	}
	return id
}

// BenchmarkHugeDir builds a directory of 1M S3-like entries in format 1
// (one directory blob of page references) and format 2 (index pages),
// then measures what one new entry rewrites and what one lookup reads:
//
//	go test ./engine/tree -run '^$' -bench HugeDir -benchtime 5x [-hugedir.entries 10000000]
//
// build: time to encode and hash the entries (no I/O, one core).
// insert: new blobs and bytes a rebuild with one more entry stores (what
// a backup uploads for that directory); ns/op is a whole rebuild.
// lookup: blobs and bytes one cold lookup reads, the directory blob
// included (the descent through the kept directory and index pages; the
// page is counted by its size).
func BenchmarkHugeDir(b *testing.B) {
	n := *benchEntries
	for _, version := range []int{1, 2} {
		s := &sizeStore{size: map[crypto.ID]int{}, keep: map[crypto.ID][]byte{}}
		id := buildHuge(b, s, version, n, 0)
		base := map[crypto.ID]bool{}
		for _, id := range s.saved {
			base[id] = true
		}
		d, err := DecodeDir(s.keep[id])
		if err != nil {
			b.Fatal(err)
		}
		dirSize := s.size[id]

		b.Run(fmt.Sprintf("build/v%d", version), func(b *testing.B) {
			s := &sizeStore{size: map[crypto.ID]int{}, keep: map[crypto.ID][]byte{}}
			for b.Loop() {
				buildHuge(b, s, version, n, 0)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(d.Height), "levels")
			b.ReportMetric(float64(dirSize), "dirblob-B")
		})

		b.Run(fmt.Sprintf("insert/v%d", version), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 0))
			var blobs, bytes int
			for b.Loop() {
				buildHuge(b, s, version, n, 2*r.IntN(n)+1)
				for _, id := range s.saved {
					if !base[id] {
						blobs++
						bytes += s.size[id]
					}
				}
				// Forget this insert's blobs: the next starts from the base.
				for id := range s.size {
					if !base[id] {
						delete(s.size, id)
						delete(s.keep, id)
					}
				}
			}
			b.ReportMetric(float64(blobs)/float64(b.N), "blobs/insert")
			b.ReportMetric(float64(bytes)/float64(b.N), "B/insert")
		})

		b.Run(fmt.Sprintf("lookup/v%d", version), func(b *testing.B) {
			// What a lookup reads, averaged over 1,000 random keys
			// whatever b.N; then the time of b.N lookups.
			r := rand.New(rand.NewPCG(2, 0))
			s.loads, s.loadedSize = 0, 0
			const keys = 1000
			for range keys {
				benchLookup(b, s, id, 2*r.IntN(n))
			}
			loads, size := s.loads, s.loadedSize
			for b.Loop() {
				benchLookup(b, s, id, 2*r.IntN(n))
			}
			b.ReportMetric(float64(loads)/keys, "blobs/lookup")
			b.ReportMetric(float64(size)/keys, "B/lookup")
		})
	}
}

// benchLookup looks entry i up in directory id, cold: it decodes the
// directory blob and the index pages on the way, and counts them and
// the page (by its size) as read.
func benchLookup(b *testing.B, s *sizeStore, id crypto.ID, i int) {
	d, err := DecodeDir(s.keep[id])
	if err != nil {
		b.Fatal(err)
	}
	nd := s3Node(i)
	key := nd.SortKey()
	s.loads++
	s.loadedSize += s.size[id]
	refs := d.Pages
	for level := d.Height; ; level-- {
		j := lastAtMost(refs, 0, key)
		s.loads++
		s.loadedSize += s.size[refs[j].ID]
		if level == 0 {
			return
		}
		ip, err := DecodeIndexPage(s.keep[refs[j].ID])
		if err != nil {
			b.Fatal(err)
		}
		refs = ip.Pages
	}
}
