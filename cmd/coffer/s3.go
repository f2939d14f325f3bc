package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/coffer-backup/coffer/engine/backup"

	"github.com/coffer-backup/coffer/engine/restore"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/coffer-backup/coffer/engine/store"
	"github.com/coffer-backup/coffer/s3io"
)

// isS3 says a location is an S3 bucket (s3://bucket/prefix?options).
func isS3(loc string) bool { return strings.HasPrefix(loc, "s3://") }

// s3Client builds the S3 client of a location. Its options come from the
// location's query and the AWS environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, AWS_PROFILE, …).
// The SDK's log lines are -v notes.
func s3Client(ctx context.Context, loc string) (*s3io.Client, error) {
	o, err := s3Options(loc, nil)
	if err != nil {
		return nil, err
	}
	o.Log = verbosef
	o.Memory = s3Memory
	if verbose {
		verbosef("s3://%s: %s; %s", o.Bucket, endpointSource(o), credentialSource(o))
	}
	return s3io.NewClient(ctx, o)
}

// s3Memory is the byte budget (--memory) shared by every S3 client of a
// command: the parts and bodies a bucket source or destination holds.
var s3Memory *s3io.Memory

func memoryFlag() cli.Flag {
	return &cli.StringFlag{Name: "memory", EnvVars: []string{"COFFER_MEMORY"}, Value: fmt.Sprintf("%dMiB", s3io.DefaultMemory>>20),
		Usage: "the `SIZE` (128MiB, 1GiB) of the buffers a backup or restore that touches a bucket holds at once: pack reads, object bodies and parts, chunker windows, pack buffers; concurrency adapts to it"}
}

// setMemory reads --memory (the command's, else the global one).
func setMemory(c *cli.Context) error {
	v := c.String("memory")
	if v == "" {
		v = fmt.Sprintf("%dMiB", s3io.DefaultMemory>>20)
	}
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return usagef("--memory %s: want a size such as 128MiB or 1GiB", v)
	}
	m, err := s3io.NewMemory(int64(n))
	if err != nil {
		return usagef("--memory %s: at least %s", v, humanize.IBytes(s3io.MinMemory))
	}
	s3Memory = m
	return nil
}

// s3Budget returns the --memory budget when one of locs is in S3 (the
// same one the command's S3 clients share), nil otherwise: a restore
// from and to folders is not bounded by it. It also sets the Go
// runtime's soft memory limit to the budget plus room for the rest of
// the command (the index, trees, the runtime), so that the garbage
// collector returns dropped buffers before the heap grows far past what
// is live.
func s3Budget(locs ...string) *s3io.Memory {
	for _, l := range locs {
		if isS3(l) && s3Memory != nil {
			if os.Getenv("GOMEMLIMIT") == "" {
				debug.SetMemoryLimit(s3Memory.Budget() + memoryHeadroom)
			}
			return s3Memory
		}
	}
	return nil
}

// memoryHeadroom is what a command holds beside its --memory buffers,
// for the soft memory limit: 80 MiB, not 64, keeps the collector off
// the limit in a bucket backup (docs/PERFORMANCE.md, "the soft limit's
// headroom").
const memoryHeadroom = 80 << 20

// backupShare splits a backup's budget m: chunker windows of window
// bytes (a quarter of it, at least one) and pack uploads at once (a
// quarter of it in pack buffers of pack bytes, each upload holding one
// beside the pack being filled, at least one), and the bytes they hold,
// which the backup takes from m; a bucket source's parts share the
// rest. Zeros without a budget: the engine's defaults.
//
// Deadlock-free: the backup takes its share once, before any part is
// asked for; a reader's parts are then asked in order (see
// s3io.partReader), and a file worker waits for a window holding
// nothing.
func backupShare(m *s3io.Memory, window, pack int) (windows, uploaders int, held int64) {
	if m == nil || window <= 0 || pack <= 0 {
		return 0, 0, 0
	}
	q := m.Budget() / 4
	windows = max(1, int(q/int64(window)))
	uploaders = max(1, int(q/int64(pack))-1)
	held = int64(windows)*int64(window) + int64(uploaders+1)*int64(pack)
	// Under a small budget they take 3/8 of it at most, none under
	// 16 MiB (and hold more than they count): a source's part (at most
	// half the budget, 5 MiB at least, rounded up by an eighth) must
	// always find room.
	if m.Budget() < 16<<20 {
		return windows, uploaders, 0
	}
	return windows, uploaders, min(held, 3*m.Budget()/8)
}

// reportMemory says, under -v, how much of the S3 budget the command
// used (test/ checks the high-water mark against the budget).
func reportMemory() {
	if s3Memory == nil {
		return
	}
	if st := s3Memory.Stats(); st.Gets > 0 {
		verbosef("S3 buffers: high-water %d of a %d byte budget (--memory), %d bytes in %d buffers taken",
			st.High, st.Budget, st.Total, st.Gets)
	}
}

// endpointSource says, for -v, where the endpoint of o comes from.
func endpointSource(o s3io.Options) string {
	switch {
	case o.Endpoint != "":
		return "endpoint " + o.Endpoint + " (from the location's or the entry's endpoint)"
	case os.Getenv("AWS_ENDPOINT_URL_S3") != "":
		return "endpoint " + os.Getenv("AWS_ENDPOINT_URL_S3") + " (from AWS_ENDPOINT_URL_S3)"
	case os.Getenv("AWS_ENDPOINT_URL") != "":
		return "endpoint " + os.Getenv("AWS_ENDPOINT_URL") + " (from AWS_ENDPOINT_URL)"
	}
	return "AWS's endpoint for the bucket's region"
}

// credentialSource says, for -v, where the credentials of o come from
// (never what they are).
func credentialSource(o s3io.Options) string {
	switch {
	case o.AccessKey != "":
		return "credentials from the location's or the entry's access_key"
	case o.Profile != "":
		return "credentials from profile " + o.Profile
	case os.Getenv("AWS_ACCESS_KEY_ID") != "":
		return "credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
	case os.Getenv("AWS_PROFILE") != "":
		return "credentials from profile " + os.Getenv("AWS_PROFILE") + " (AWS_PROFILE)"
	}
	return "credentials from the SDK's default chain (shared files, SSO, instance role)"
}

// s3Options returns the options of an S3 location, s3://BUCKET/PREFIX with
// an optional ?key=value query, and of the keys of a named config entry:
// type (must be s3), location or uri (used when location is ""),
// access_key, secret_access_key, session_token, profile, region,
// endpoint, use_path_style, use_tls, storage_class, sse, sse_kms_key_id,
// and the other keys of s3io.OptionNames. kv's keys win over the query's.
// Errors are usage errors: they name the key and the value expected.
func s3Options(location string, kv map[string]string) (s3io.Options, error) {
	if t, ok := kv["type"]; ok && t != "s3" {
		return s3io.Options{}, usagef("type=%s is not an S3 entry", t)
	}
	if location == "" {
		location = kv["location"]
	}
	if location == "" {
		location = kv["uri"]
	}
	o, err := s3io.ParseLocation(location)
	if err != nil {
		return o, usagef("%v", err)
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		switch k {
		case "type", "location", "uri":
		default:
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := o.Set(k, kv[k]); err != nil {
			return o, usagef("%s: %v", o.URI(), err)
		}
	}
	return o, nil
}

// concurrencyFor is the --concurrency of a command that works on locs:
// as given, or, when the user left it and one of locs is in S3, at least
// s3io.DefaultConcurrency, since requests to a bucket wait on latency,
// not on the CPU.
func concurrencyFor(c *cli.Context, locs ...string) int {
	n := c.Int("concurrency")
	if c.IsSet("concurrency") {
		return n
	}
	for _, l := range locs {
		if isS3(l) {
			return max(n, s3io.DefaultConcurrency)
		}
	}
	return n
}

func s3Storage(loc string) (store.Storage, error) {
	c, err := s3Client(context.Background(), loc)
	if err != nil {
		return nil, err
	}
	return s3io.NewStorage(c), nil
}

// prepareS3Store makes the bucket of an S3 store that create is about to
// write, when it is missing; with Object Lock enabled for a store with
// object lock.
func prepareS3Store(ctx context.Context, loc string, objectLock bool) error {
	if !isS3(loc) {
		return nil
	}
	c, err := s3Client(ctx, loc)
	if err != nil {
		return err
	}
	ensure := s3io.EnsureBucket
	if objectLock {
		ensure = s3io.EnsureLockedBucket
	}
	created, err := ensure(ctx, c)
	if err != nil {
		return fmt.Errorf("store %s: %w", c.URI(), err)
	}
	if created && !quiet {
		with := ""
		if objectLock {
			with = " with Object Lock"
		}
		fmt.Fprintf(os.Stderr, "coffer: created bucket %s%s\n", c.Options().Bucket, with)
	}
	return nil
}

func s3Source(loc string) (backup.Source, error) {
	c, err := s3Client(context.Background(), loc)
	if err != nil {
		return nil, err
	}
	src := s3io.NewSource(c)
	src.Notice = func(msg string) { fmt.Fprintf(os.Stderr, "coffer: warning: %s\n", msg) }
	return src, nil
}

func s3Destination(ctx context.Context, loc string) (restore.Destination, error) {
	c, err := s3Client(ctx, loc)
	if err != nil {
		return nil, err
	}
	return s3io.NewDestination(c), nil
}

// destinationFor returns where a restore writes: a bucket, or a folder,
// which tells of each key it had to give another name (docs/S3.md).
func destinationFor(ctx context.Context, to string, stderr io.Writer) (restore.Destination, error) {
	if isS3(to) {
		return s3Destination(ctx, to)
	}
	d, err := restore.NewFolder(to)
	if err != nil {
		return nil, err
	}
	d.Mapped = func(path, local string) {
		fmt.Fprintf(stderr, "coffer: note: %q restored as %q (a folder cannot hold that name; see docs/S3.md)\n", path, local)
	}
	return d, nil
}
