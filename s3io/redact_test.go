package s3io

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"/srv/backups":                  "/srv/backups",
		"/srv/a?secret_access_key=x":    "/srv/a?secret_access_key=x", // a folder's name, not a query
		"@prod":                         "@prod",
		"s3://b/p":                      "s3://b/p",
		"s3://b/p?region=eu-west-3":     "s3://b/p?region=eu-west-3",
		"s3://b/p?secret_access_key=S3": "s3://b/p?secret_access_key=***",
		"s3://b/p?secret_key=S3":        "s3://b/p?secret_key=***",
		"s3://b/p?session_token=S3":     "s3://b/p?session_token=***",
		"s3://b/p?access_key=AKIAEXAMPLE&secret_access_key=S3&endpoint=h:1": "s3://b/p?access_key=AKIA***&secret_access_key=***&endpoint=h:1",
		"s3://b/p?secret%5Faccess%5Fkey=S3":                                 "s3://b/p?secret%5Faccess%5Fkey=***",
		"s3://b/p?secret_acess_key=S3":                                      "s3://b/p?secret_acess_key=***", // misspelt: still masked
		"s3://b/p?region=x;secret_access_key=S3":                            "s3://b/p?region=x;secret_access_key=***",
		"s3://b/p?secret_access_key=&S3":                                    "s3://b/p?secret_access_key=***&***",
		"s3://KEY:S3@b/p":                                                   "s3://***@b/p",
		"s3://b/p?endpoint=http://u:S3@h:1":                                 "s3://b/p?endpoint=http%3A%2F%2F%2A%2A%2A%40h%3A1",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	// Every option is either shown or masked on purpose.
	for _, k := range OptionNames {
		secret := k == "access_key" || k == "secret_access_key" || k == "session_token"
		if publicOptions[k] == secret {
			t.Errorf("option %s: public=%v", k, publicOptions[k])
		}
	}
}

// ParseLocation's errors quote the location without its secrets.
func TestParseLocationErrorsHideSecrets(t *testing.T) {
	for _, loc := range []string{
		"s3://b/p?secret_access_key=S3CR3T&use_tls=maybe",
		"s3://b/p?session_token=S3CR3T&nope=1",
		"s3://b/p?secret_access_key=S3CR3T&x=%zz",
		"s3://?secret_access_key=S3CR3T",
		"s3://AK:S3CR3T@b/p",
		"s4://b/p?secret_access_key=S3CR3T",
	} {
		_, err := ParseLocation(loc)
		if err == nil {
			t.Fatalf("%s: no error", loc)
		}
		if strings.Contains(err.Error(), "S3CR3T") {
			t.Errorf("%s: %v", loc, err)
		}
	}
}
