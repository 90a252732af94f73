package gerrit

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func k(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func TestSeen(t *testing.T) {
	s := newSeen(4)
	s.add(k("a"), 10, true)
	s.add(k("a"), 10, true)
	s.add(k("b"), 11, true)
	if !s.take(k("a")) || !s.take(k("a")) || s.take(k("a")) {
		t.Fatal("a multiset of two a's did not give exactly two")
	}
	s.prune(11)
	if s.counts()[k("b")] != 1 {
		t.Fatal("prune dropped an entry at the floor")
	}
	s.prune(12)
	if s.len() != 0 {
		t.Fatalf("prune left %d entries", s.len())
	}
	for i := range 10 {
		s.add(k(string(rune('a'+i))), 20, true)
	}
	if s.len() != 4 {
		t.Fatalf("cap 4 holds %d", s.len())
	}
}

// An event without a time keeps its place until a dated event after it is
// older than the floor: its second is unknown until then.
func TestSeenOpen(t *testing.T) {
	s := newSeen(100)
	s.add(k("a"), 10, true)
	s.add(k("u"), 10, false) // provisional second 10
	s.prune(50)
	if c := s.counts(); c[k("a")] != 0 || c[k("u")] != 1 {
		t.Fatalf("open entry pruned or the one before it kept: %v", c)
	}
	s.add(k("b"), 60, true) // u was created by second 60
	s.prune(55)
	if s.counts()[k("u")] != 1 {
		t.Fatal("an entry closed at 60 was pruned below 60")
	}
	s.prune(61)
	if s.len() != 0 {
		t.Fatalf("%d entries left", s.len())
	}
	// Taking, then pruning and the cap, keep the counts right.
	s.add(k("x"), 70, true)
	s.add(k("x"), 71, true)
	s.add(k("y"), 72, true)
	if !s.take(k("x")) {
		t.Fatal("no x")
	}
	s.prune(72)
	if c := s.counts(); c[k("x")] != 0 || c[k("y")] != 1 || s.len() != 1 {
		t.Fatalf("after take and prune: %v, len %d", c, s.len())
	}
	c := s.clone()
	c.add(k("z"), 73, true)
	if s.len() != 1 || c.len() != 2 || !c.take(k("y")) {
		t.Fatal("clone shares state or lost entries")
	}
}

func TestPositionRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := statePath(dir, "open/dev ..")
	if filepath.Dir(filepath.Dir(path)) != dir || strings.Contains(filepath.Base(path), "/") {
		t.Fatalf("state path %q escapes %q", path, dir)
	}
	s := newSeen(100)
	s.add(k("x"), 5, true)
	s.add(k("x"), 5, true)
	s.add(k("y"), 6, true)
	s.add(k("u"), 6, false)
	p := position{Server: "h:29418", Second: 6, Origin: 1, Recent: entriesOf(s)}
	if err := savePosition(path, p); err != nil {
		t.Fatal(err)
	}
	got, ok, err := loadPosition(path)
	if err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	if got.Server != p.Server || got.Second != 6 || got.Origin != 1 {
		t.Fatalf("got %+v", got)
	}
	if c := got.seenSet(100).counts(); c[k("x")] != 2 || c[k("y")] != 1 || c[k("u")] != 1 {
		t.Fatalf("recent set not restored: %v", c)
	}
	if r := got.seenSet(100); !r.order[len(r.order)-1].open {
		t.Fatal("an entry without a time came back with one")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if _, ok, err := loadPosition(filepath.Join(dir, "missing")); ok || err != nil {
		t.Fatal("a missing file is not 'no position'")
	}
}

func FuzzParsePosition(f *testing.F) {
	f.Add([]byte(`{"server":"h:1","second":5,"origin":1,"recent":[{"key":"00","sec":5}]}`))
	f.Add([]byte(`{"second":-1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePosition(b)
		if err != nil {
			return
		}
		if p.Second < 0 || p.Origin < 0 {
			t.Fatal("negative time accepted")
		}
		p.seenSet(10) // must not panic on any key
	})
}

func FuzzParseEventsLog(f *testing.F) {
	f.Add([]byte(")]}'\n{\"type\":\"a\"}\n\n{\"type\":\"b\"}\n"))
	f.Add([]byte("x"))
	f.Add([]byte(strings.Repeat("y", 300) + "\nz"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := parseEventsLog(strings.NewReader(string(b)), 256)
		if err != nil {
			return
		}
		for _, l := range lines {
			if len(l) == 0 || len(l) > 256 {
				t.Fatalf("bad line %q", l)
			}
		}
	})
}
