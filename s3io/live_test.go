package s3io

import "testing"

// TestShellQuote: the restore command the live mount logs for an
// archived object pastes into a shell as is, whatever the key.
func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"photos/2024/a.jpg": "photos/2024/a.jpg",
		"a b":               "'a b'",
		"it's":              `'it'\''s'`,
		"":                  "''",
		"$HOME;rm -rf":      "'$HOME;rm -rf'",
		"ключ":              "'ключ'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
