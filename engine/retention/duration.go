package retention

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a span of calendar units, as --keep-within takes it:
// "1y2m3d4h" is one year, two months, three days and four hours. Years,
// months and days are calendar units in the policy's time zone (a day
// across a DST change is 23 or 25 hours), hours are 60 minutes.
type Duration struct {
	Years, Months, Days, Hours int
}

// IsZero reports whether d is no span at all.
func (d Duration) IsZero() bool { return d == Duration{} }

// Before returns the instant d before t, computed in loc.
func (d Duration) Before(t time.Time, loc *time.Location) time.Time {
	return t.In(loc).AddDate(-d.Years, -d.Months, -d.Days).Add(-time.Duration(d.Hours) * time.Hour)
}

// String gives d back in the form ParseDuration reads ("0h" when zero).
func (d Duration) String() string {
	var b strings.Builder
	for _, u := range []struct {
		n    int
		unit string
	}{{d.Years, "y"}, {d.Months, "m"}, {d.Days, "d"}, {d.Hours, "h"}} {
		if u.n != 0 {
			b.WriteString(strconv.Itoa(u.n) + u.unit)
		}
	}
	if b.Len() == 0 {
		return "0h"
	}
	return b.String()
}

// ParseDuration reads a duration such as "1y2m3d4h", "7d", "2w" or
// "36h": numbers each followed by a unit, y (years), m (months), w
// (weeks: 7 days), d (days) or h (hours); each unit at most once.
// There are no minutes: "m" is months, as in restic.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	if s == "" {
		return d, fmt.Errorf("empty duration: want numbers with units, like 1y2m3d4h (years, months, days, hours) or 2w")
	}
	if strings.Contains(s, "min") || strings.HasSuffix(s, "s") {
		return d, fmt.Errorf("duration %q: the smallest unit is the hour (h); m is months", s)
	}
	seen := map[byte]bool{}
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			return Duration{}, fmt.Errorf("duration %q: want numbers with units, like 1y2m3d4h (years, months, days, hours) or 2w", s)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n > 100000 {
			return Duration{}, fmt.Errorf("duration %q: %s is too large", s, rest[:i])
		}
		u := rest[i]
		if seen[u] {
			return Duration{}, fmt.Errorf("duration %q: unit %c given twice", s, u)
		}
		seen[u] = true
		switch u {
		case 'y':
			d.Years = n
		case 'm':
			d.Months = n
		case 'w':
			d.Days += 7 * n
		case 'd':
			d.Days += n
		case 'h':
			d.Hours = n
		default:
			return Duration{}, fmt.Errorf("duration %q: unknown unit %q: use y (years), m (months), w (weeks), d (days) or h (hours)", s, string(u))
		}
		rest = rest[i+1:]
	}
	if d.IsZero() {
		return d, fmt.Errorf("duration %q is zero: it would keep nothing", s)
	}
	return d, nil
}
