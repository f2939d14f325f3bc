package test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/testnet"
)

// An S3 server that never answers, or where nothing listens, fails the
// command in bounded time (the timeout, from the location or
// COFFER_S3_TIMEOUT, tried twice; refused at once) with exit 1 and a
// message that names the endpoint; -v shows the retry.
func TestS3Unreachable(t *testing.T) {
	hang := testnet.NeverAnswers(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	e := &env{t: t, pass: "x"}
	base := []string{"COFFER_PASSPHRASE=x", "AWS_ACCESS_KEY_ID=k", "AWS_SECRET_ACCESS_KEY=s", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_ENDPOINT_URL=", "AWS_ENDPOINT_URL_S3=", "XDG_CONFIG_HOME=" + t.TempDir()}
	for _, tc := range []struct {
		name     string
		env      []string
		loc      string
		min, max time.Duration
		want     []string
	}{
		{"hanging, timeout option", nil, "s3://b/p?endpoint=" + hang + "&use_tls=false&timeout=2s", 4 * time.Second, 9 * time.Second,
			[]string{"http://" + hang + " did not answer within 2s (2 tries)", "retrying HeadObject on http://" + hang + " after ", "(attempt 2/2)"}},
		{"hanging, COFFER_S3_TIMEOUT", []string{"COFFER_S3_TIMEOUT=2s"}, "s3://b/p?endpoint=" + hang + "&use_tls=false", 4 * time.Second, 9 * time.Second,
			[]string{"http://" + hang + " did not answer within 2s (2 tries)"}},
		{"refused", nil, "s3://b/p?endpoint=" + refused + "&use_tls=false", 0, 5 * time.Second,
			[]string{"nothing listens at http://" + refused + ": check the endpoint and port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			start := time.Now()
			r := e.runEnv(append(append([]string{}, base...), tc.env...), "-v", "at", tc.loc, "ls")
			took := time.Since(start)
			t.Logf("%v: %s", took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
			if r.code != 1 {
				t.Fatalf("want exit 1, got %s", r)
			}
			if took < tc.min || took > tc.max {
				t.Errorf("took %v, want %v to %v", took, tc.min, tc.max)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
}
