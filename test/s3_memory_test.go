package test

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strconv"
	"testing"
)

// memoryUse is what coffer -v says of its S3 buffer budget.
type memoryUse struct{ high, budget, total int64 }

var memoryLine = regexp.MustCompile(`S3 buffers: high-water (\d+) of a (\d+) byte budget \(--memory\), (\d+) bytes in (\d+) buffers taken`)

func parseMemoryUse(t *testing.T, r result) memoryUse {
	t.Helper()
	m := memoryLine.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no S3 buffer figures under -v:\n%s", r)
	}
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	return memoryUse{n(m[1]), n(m[2]), n(m[3])}
}

// TestS3MemoryBudget backs up and restores a bucket (300 small objects,
// a 20 MiB one uploaded by the aws CLI in 8 MiB parts, objects with
// every header and tags) under an 8 MiB --memory: the restored bucket
// equals the source as the aws CLI sees it (keys, sizes, bodies,
// headers, tags, and the large object's multipart ETag, since its 8 MiB
// parts fit the budget); the budget's high-water mark never passes it,
// and every small object's body was reserved from it (s3io's
// TestDestinationUnderBudget checks that the destination's buffers stay
// within what the restore reserved). A second restore with a
// part_size (16 MiB) over the budget (from COFFER_MEMORY) finishes, in
// clamped parts, with the same bytes.
func TestS3MemoryBudget(t *testing.T) {
	m := needMinio(t)
	src := m.newBucket(t, "memsrc")
	rich := seedBucket(t, m, src, 300)
	objs := m.listObjects(t, src, "")
	var total, large int64
	var largeETag string
	for _, o := range objs {
		total += o.Size
		if o.Key == "big/large.bin" {
			large, largeETag = o.Size, o.ETag
		}
	}
	if large == 0 || !regexp.MustCompile(`-3"?$`).MatchString(largeETag) {
		t.Fatalf("the aws CLI did not upload big/large.bin in 3 parts: %q", largeETag)
	}
	e := newS3Env(t, m, "s3://"+bucketName("memstore")+"/c/")
	r := e.ok("backup", "--json", "--memory", "8MiB", "-v", "s3://"+src+"/")
	var s1 snapOut
	if err := json.Unmarshal([]byte(r.stdout), &s1); err != nil {
		t.Fatalf("backup --json: %v\n%s", err, r)
	}
	if u := parseMemoryUse(t, r); u.budget != 8<<20 || u.high > u.budget || u.total < large {
		t.Fatalf("backup: %+v: over the budget, or the large object's parts bypassed it", u)
	}

	dst := m.newBucket(t, "memdst")
	r = e.ok("restore", "--memory", "8MiB", "-v", "-to", "s3://"+dst+"/r/", s1.Short)
	// Every small object's body is reserved whole, the large one's job
	// takes the whole budget (a part and two 8 MiB reads do not fit it).
	if u := parseMemoryUse(t, r); u.budget != 8<<20 || u.high > u.budget || u.high < 5<<20 || u.total < total-large {
		t.Fatalf("restore of %d bytes: %+v: over the budget, or bypassed", total, u)
	}
	compareBuckets(t, m, src, dst, "r/")
	for _, o := range m.listObjects(t, dst, "r/") {
		if o.Key == "r/big/large.bin" && o.ETag != largeETag {
			t.Errorf("large object's ETag %s, source %s: its 8 MiB parts fit the budget, the ETag should be kept", o.ETag, largeETag)
		}
	}
	eachAtOnce(t, len(rich), func(i int) {
		k := rich[i]
		if h1, h2 := m.head(t, src, k), m.head(t, dst, "r/"+k); !reflect.DeepEqual(h1, h2) {
			t.Errorf("%s: headers differ:\nsource   %+v\nrestored %+v", k, h1, h2)
		}
		if t1, t2 := m.tags(t, src, k), m.tags(t, dst, "r/"+k); t1 != t2 {
			t.Errorf("%s: tags differ: %s, %s", k, t1, t2)
		}
	})

	// A part size over the budget is clamped, not waited for forever.
	r = e.runEnv(append([]string{"COFFER_PASSPHRASE=" + e.pass, "COFFER_MEMORY=8MiB"}, e.extra...),
		"at", e.store, "restore", "-v", "-to", "s3://"+dst+"/p/?part_size=16777216", s1.Short)
	if r.code != 0 {
		t.Fatalf("restore with part_size over the budget: %s", r)
	}
	if u := parseMemoryUse(t, r); u.budget != 8<<20 || u.high > u.budget || u.total < total-large {
		t.Fatalf("restore with part_size over the budget: %+v", u)
	}
	compareBuckets(t, m, src, dst, "p/")
}
