package auth

import (
	"strings"
	"testing"
	"time"
)

// Vectors made with Python's hashlib.pbkdf2_hmac, which Werkzeug (and so
// hbd passwd) uses: the salt is the text between the dollars.
const (
	hbdHash   = "pbkdf2:sha256:260000$Zx9QkL2mN4pR7sT1$44e399779d3cd4d34a539e8c23880ebafbe3946bdaaa976a4fb6479cd339db90"
	shortHash = "pbkdf2:sha256:1000$abc$253bde902dd3d48a45141fd9f278fb9890e37a0c7f97101656fc6f63c20a1b96"
)

func TestCheckWerkzeugHashes(t *testing.T) {
	for _, tc := range []struct {
		hash, right, wrong string
	}{
		{hbdHash, "correct horse", "correct horse "},
		{shortHash, "pässwörd", "passwort"},
	} {
		h, err := ParseHash(tc.hash)
		if err != nil {
			t.Fatal(err)
		}
		if !h.Check(tc.right) {
			t.Errorf("%s: the right password is refused", tc.hash)
		}
		if h.Check(tc.wrong) || h.Check("") {
			t.Errorf("%s: a wrong password is accepted", tc.hash)
		}
		if h.String() != tc.hash {
			t.Errorf("String() = %s, want %s", h.String(), tc.hash)
		}
	}
}

func TestParseHashRefusesBadLayouts(t *testing.T) {
	for in, want := range map[string]string{
		"secret": "not a password hash",
		"pbkdf2:sha1:1000$abc$253bde902dd3d48a45141fd9f278fb9890e37a0c7f97101656fc6f63c20a1b96":   "digest",
		"scrypt:32768:8:1$abc$253bde902dd3d48a45141fd9f278fb9890e37a0c7f97101656fc6f63c20a1b96":   "not supported",
		"pbkdf2:sha256:x$abc$253bde902dd3d48a45141fd9f278fb9890e37a0c7f97101656fc6f63c20a1b96":    "iteration count",
		"pbkdf2:sha256:1000$abc$253BDE902DD3D48A45141FD9F278FB9890E37A0C7F97101656FC6F63C20A1B96": "lower-case",
		"pbkdf2:sha256:1000$abc$253bde": "64 lower-case hex digits",
		"pbkdf2:sha256:1000$$253bde":    "no salt",
	} {
		if _, err := ParseHash(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseHash(%q) = %v, want an error containing %q", in, err, want)
		}
	}
	h, err := ParseHash("pbkdf2:sha256$abc$253bde902dd3d48a45141fd9f278fb9890e37a0c7f97101656fc6f63c20a1b96")
	if err != nil || h.Iterations != DefaultIterations {
		t.Errorf("no iteration count: %+v %v, want DefaultIterations", h, err)
	}
}

func TestMakeRoundTrips(t *testing.T) {
	s, err := Make("hunter2", 1000)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Check("hunter2") || h.Check("hunter3") {
		t.Errorf("Make's hash %s does not check its password", s)
	}
}

func TestVerifierCachesOnlySuccesses(t *testing.T) {
	h, _ := ParseHash(shortHash)
	hashes := map[string]Hash{"alice": h}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v := NewVerifier(1)
	v.Now = func() time.Time { return now }
	if !v.Verify(hashes, "alice", "pässwörd") || !v.Verify(hashes, "alice", "pässwörd") {
		t.Fatal("right password refused")
	}
	if v.Verify(hashes, "alice", "wrong") {
		t.Error("a wrong password passes after a cached success")
	}
	if v.Verify(hashes, "bob", "pässwörd") {
		t.Error("an unknown user passes")
	}
	// A changed hash (a reload with a new password) must not be served
	// from the cache.
	other, _ := Make("new", 1000)
	oh, _ := ParseHash(other)
	if v.Verify(map[string]Hash{"alice": oh}, "alice", "pässwörd") {
		t.Error("the old password passes after the hash changed")
	}
}
