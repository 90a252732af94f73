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

// seen is a multiset of event content keys, each with the second the event
// was created in. It remembers what was published recently so that the
// replay of a gap, which starts a few seconds before the gap, publishes only
// what is missing. A multiset, not a set: two identical events in one second
// are two events.
type seen struct {
	secs  map[[32]byte][]int64
	order []seenEntry // insertion order, for pruning and the size cap
	max   int
}

type seenEntry struct {
	key [32]byte
	sec int64
}

func newSeen(max int) *seen {
	return &seen{secs: map[[32]byte][]int64{}, max: max}
}

func (s *seen) add(k [32]byte, sec int64) {
	s.secs[k] = append(s.secs[k], sec)
	s.order = append(s.order, seenEntry{k, sec})
	for len(s.order) > s.max {
		s.dropFront()
	}
}

// take removes one occurrence of k and reports whether there was one.
func (s *seen) take(k [32]byte) bool {
	l := s.secs[k]
	if len(l) == 0 {
		return false
	}
	if len(l) == 1 {
		delete(s.secs, k)
	} else {
		s.secs[k] = l[:len(l)-1]
	}
	return true
}

// prune forgets entries older than floor. Entries arrive almost in time
// order, so looking at the front is enough; a straggler lives until the cap
// pushes it out, which only costs memory.
func (s *seen) prune(floor int64) {
	for len(s.order) > 0 && s.order[0].sec < floor {
		s.dropFront()
	}
	if cap(s.order) > 1024 && len(s.order) < cap(s.order)/4 {
		s.order = append([]seenEntry(nil), s.order...)
	}
}

func (s *seen) dropFront() {
	e := s.order[0]
	s.order = s.order[1:]
	l := s.secs[e.key]
	for i, sec := range l {
		if sec == e.sec {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(s.secs, e.key)
	} else {
		s.secs[e.key] = l
	}
}

// counts is a snapshot of how many times each key is present.
func (s *seen) counts() map[[32]byte]int {
	m := make(map[[32]byte]int, len(s.secs))
	for k, l := range s.secs {
		m[k] = len(l)
	}
	return m
}

func (s *seen) clone() *seen {
	c := newSeen(s.max)
	for _, e := range s.order {
		c.order = append(c.order, e)
	}
	for k, l := range s.secs {
		c.secs[k] = append([]int64(nil), l...)
	}
	return c
}

func (s *seen) len() int {
	n := 0
	for _, l := range s.secs {
		n += len(l)
	}
	return n
}

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
	Key string `json:"key"` // hex SHA-256 of the canonical event
	Sec int64  `json:"sec"`
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
		s.add([32]byte(k), e.Sec)
	}
	return s
}

func entriesOf(s *seen) []stateEntry {
	out := make([]stateEntry, 0, len(s.order))
	counts := s.counts()
	for _, e := range s.order {
		if counts[e.key] > 0 {
			counts[e.key]--
			out = append(out, stateEntry{hex.EncodeToString(e.key[:]), e.sec})
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
