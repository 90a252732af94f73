package gerrit

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
)

// seen is a multiset of event content keys in the order they were added,
// each with the second the event belongs to. It remembers what was
// published recently so that a replay, which starts a few seconds before
// the gap, publishes only what is missing, and what a replay published so
// that the live stream does not publish it again. A multiset, not a set:
// two identical events in one second are two events.
//
// An event without eventCreatedOn is "open": its second is unknown until
// a dated event follows it (the log files it no later than that one), and
// pruning never passes an open entry.
type seen struct {
	occ   map[[32]byte][]uint64 // untaken occurrences of a key, oldest first
	order []seenEntry           // order[i] has sequence number base+i
	base  uint64
	count int // untaken entries
	max   int // entries kept at most, taken ones included
}

type seenEntry struct {
	key   [32]byte
	sec   int64
	open  bool
	taken bool
}

func newSeen(max int) *seen {
	return &seen{occ: map[[32]byte][]uint64{}, max: max}
}

// add records k. A dated entry closes the open entries before it: their
// second becomes at least sec. An undated one is open, with sec as a
// provisional second.
func (s *seen) add(k [32]byte, sec int64, dated bool) {
	if dated {
		for i := len(s.order) - 1; i >= 0 && s.order[i].open; i-- {
			s.order[i].open = false
			s.order[i].sec = max(s.order[i].sec, sec)
		}
	}
	s.occ[k] = append(s.occ[k], s.base+uint64(len(s.order)))
	s.order = append(s.order, seenEntry{key: k, sec: sec, open: !dated})
	s.count++
	for len(s.order) > s.max {
		s.dropFront()
	}
}

// take removes the oldest occurrence of k and reports whether there was one.
func (s *seen) take(k [32]byte) bool {
	l := s.occ[k]
	if len(l) == 0 {
		return false
	}
	s.order[l[0]-s.base].taken = true
	s.count--
	if len(l) == 1 {
		delete(s.occ, k)
	} else {
		s.occ[k] = l[1:]
	}
	return true
}

// prune forgets entries older than floor, from the front. Entries arrive
// almost in time order, so looking at the front is enough; a straggler
// lives until the cap pushes it out, which only costs memory.
func (s *seen) prune(floor int64) {
	for len(s.order) > 0 {
		e := s.order[0]
		if !e.taken && (e.open || e.sec >= floor) {
			break
		}
		s.dropFront()
	}
	if cap(s.order) > 1024 && len(s.order) < cap(s.order)/4 {
		s.order = append([]seenEntry(nil), s.order...)
	}
}

func (s *seen) dropFront() {
	e := s.order[0]
	s.order[0] = seenEntry{}
	s.order = s.order[1:]
	s.base++
	if e.taken {
		return
	}
	s.count--
	// The front is the oldest entry, so it is the first occurrence of its key.
	if l := s.occ[e.key]; len(l) <= 1 {
		delete(s.occ, e.key)
	} else {
		s.occ[e.key] = l[1:]
	}
}

// counts is a snapshot of how many times each key is present.
func (s *seen) counts() map[[32]byte]int {
	m := make(map[[32]byte]int, len(s.occ))
	for k, l := range s.occ {
		m[k] = len(l)
	}
	return m
}

func (s *seen) clone() *seen {
	c := newSeen(s.max)
	for _, e := range s.order {
		if !e.taken {
			c.order = append(c.order, e)
			c.occ[e.key] = append(c.occ[e.key], uint64(len(c.order)-1))
		}
	}
	c.count = len(c.order)
	return c
}

func (s *seen) len() int { return s.count }

// position is what survives a restart: where the stream was, so that the
// events-log replay covers the daemon's own downtime.
type position struct {
	// Server is host:port; a position from another server is ignored.
	Server string `json:"server"`
	// Second is the newest eventCreatedOn published (or the first connect
	// time, before any event). Replay starts a little before it.
	Second int64 `json:"second"`
	// Origin is the time of the very first connection: replay never goes
	// further back, so a new source does not publish old history.
	Origin int64 `json:"origin"`
	// Recent lists the events published in the last seconds, to skip them
	// when the replay returns them again.
	Recent []stateEntry `json:"recent"`
}

type stateEntry struct {
	Key  string `json:"key"` // hex SHA-256 of the canonical event
	Sec  int64  `json:"sec"`
	Open bool   `json:"open,omitempty"` // no eventCreatedOn, none dated after it yet
}

// statePath is where a source's position lives. The name is escaped so any
// name is one file inside dir.
func statePath(dir, name string) string {
	return filepath.Join(dir, "gerrit", "position-"+url.PathEscape(name)+".json")
}

func (p *position) seenSet(max int) *seen {
	s := newSeen(max)
	for _, e := range p.Recent {
		k, err := hex.DecodeString(e.Key)
		if err != nil || len(k) != 32 {
			continue
		}
		s.add([32]byte(k), e.Sec, !e.Open)
	}
	return s
}

func entriesOf(s *seen) []stateEntry {
	out := make([]stateEntry, 0, s.len())
	for _, e := range s.order {
		if !e.taken {
			out = append(out, stateEntry{hex.EncodeToString(e.key[:]), e.sec, e.open})
		}
	}
	return out
}

// parsePosition reads a state file's content; a damaged file is an error,
// and the caller starts without a position rather than failing.
func parsePosition(b []byte) (position, error) {
	var p position
	if err := json.Unmarshal(b, &p); err != nil {
		return position{}, fmt.Errorf("damaged position file: %w", err)
	}
	if p.Second < 0 || p.Origin < 0 {
		return position{}, errors.New("damaged position file: negative time")
	}
	return p, nil
}

func loadPosition(path string) (position, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return position{}, false, nil
	}
	if err != nil {
		return position{}, false, err
	}
	p, err := parsePosition(b)
	return p, err == nil, err
}

// savePosition writes atomically: a crash leaves the old file or the new one,
// never half of one.
func savePosition(path string, p position) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".position-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
