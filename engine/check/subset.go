package check

import (
	"github.com/coffer-backup/coffer/engine/crypto"

	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// SubsetMode says which packs a check reads.
type SubsetMode int

const (
	// ReadAll reads every pack (the zero value: what check always did).
	ReadAll SubsetMode = iota
	// ReadNone reads no pack: index, snapshots, trees and the pack
	// listing only.
	ReadNone
	// ReadSlice reads the packs of slice N of M (by pack id).
	ReadSlice
	// ReadPercent reads a random share of the packs, by count.
	ReadPercent
)

// Subset chooses the packs a check reads. Its zero value reads all.
type Subset struct {
	Mode    SubsetMode
	N, M    uint64  // ReadSlice: slice N (1-based) of M
	Percent float64 // ReadPercent: 0 < Percent ≤ 100
	// Rand, if set, draws the random packs of ReadPercent (tests); else
	// a randomly seeded source is used.
	Rand *rand.Rand
}

// ErrSubset is wrapped by every error ParseSubset returns.
var ErrSubset = errors.New("bad --read-data-subset")

// ParseSubset reads "N/M" (1 ≤ N ≤ M) or "P%" (0 < P ≤ 100, decimals
// allowed).
func ParseSubset(s string) (Subset, error) {
	bad := func(why string) (Subset, error) {
		return Subset{}, fmt.Errorf("%w %q: %s; give N/M (check slice N of M, 1 ≤ N ≤ M, e.g. 2/7) or P%% (a random P percent of the packs, 0 < P ≤ 100, e.g. 10%%)", ErrSubset, s, why)
	}
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(f) {
			return bad("the percentage is not a number")
		}
		if f <= 0 || f > 100 {
			return bad("the percentage must be above 0 and at most 100")
		}
		return Subset{Mode: ReadPercent, Percent: f}, nil
	}
	ns, ms, ok := strings.Cut(s, "/")
	if !ok {
		return bad("neither N/M nor P%")
	}
	n, err1 := strconv.ParseUint(strings.TrimSpace(ns), 10, 64)
	m, err2 := strconv.ParseUint(strings.TrimSpace(ms), 10, 64)
	if err1 != nil || err2 != nil {
		return bad("N and M must be whole numbers")
	}
	if m == 0 || n == 0 || n > m {
		return bad("N must be between 1 and M")
	}
	return Subset{Mode: ReadSlice, N: n, M: m}, nil
}

func (s Subset) String() string {
	switch s.Mode {
	case ReadNone:
		return "none"
	case ReadSlice:
		return fmt.Sprintf("%d/%d", s.N, s.M)
	case ReadPercent:
		return strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%"
	}
	return "all"
}

// Slice returns which of m slices (0-based) a pack belongs to. A pack id
// is a BLAKE3 hash of the pack, so its first 64 bits are uniform: the
// slices are m equal ranges of that number, which hold about the same
// number of packs for any m. The slice depends on the id alone, not on
// which other packs exist or the order they were written in, so a pack
// stays in its slice as the store grows, and the m slices together hold
// every pack exactly once. (restic takes the first byte mod m, which
// caps m at 256 and makes the slices unequal unless m divides 256.)
func Slice(id crypto.ID, m uint64) uint64 {
	hi, _ := bits.Mul64(binary.BigEndian.Uint64(id[:8]), m)
	return hi
}

// choose returns the packs of all that s reads.
func (s Subset) choose(all []crypto.ID) []crypto.ID {
	switch s.Mode {
	case ReadNone:
		return nil
	case ReadSlice:
		var out []crypto.ID
		for _, id := range all {
			if Slice(id, s.M) == s.N-1 {
				out = append(out, id)
			}
		}
		return out
	case ReadPercent:
		k := int(math.Ceil(float64(len(all)) * s.Percent / 100))
		k = min(k, len(all))
		sorted := slices.Clone(all)
		slices.SortFunc(sorted, func(a, b crypto.ID) int { return bytes.Compare(a[:], b[:]) })
		rnd := s.Rand
		if rnd == nil {
			rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		}
		rnd.Shuffle(len(sorted), func(i, j int) { sorted[i], sorted[j] = sorted[j], sorted[i] })
		return sorted[:k]
	}
	return all
}
