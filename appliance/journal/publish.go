package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/firehose/firehose/appliance/topic"
)

// appendTimeout bounds one attempt at a write, appendBudget all of them.
// In-process writes take microseconds, but a machine busy with a burst can
// hold one up for seconds: a store that is slow without having reported a
// write error is asked again under the same message ID (JetStream keeps it
// once), and only a store that stays silent for appendBudget is treated as
// failing, so a publisher's connection never hangs on the journal for long.
const (
	appendTimeout = 2 * time.Second
	appendBudget  = 20 * time.Second
)

// ErrNotJournaled wraps every reason a message could not be journaled.
var ErrNotJournaled = errors.New("not journaled")

// Append journals one message and returns its sequence number once the
// store has it (written to the kernel: a crash of the daemon loses nothing
// acknowledged; with fsync = "always" not even a crash of the host). The
// fan-out consumer delivers it afterwards, in journal order.
//
// An error means the message is not in the journal; it is counted, the
// journal reports itself degraded, and the caller decides what to tell the
// publisher. A gap marker is written before the next message that can be.
func (j *Journal) Append(t string, payload []byte, retain bool, qos byte) (uint64, error) {
	if j.cl != nil {
		m, err := j.message(t, payload, retain, qos)
		if err != nil {
			return 0, j.refuse(err)
		}
		return j.appendClustered(m, j.nextMsgID())
	}
	if err := j.ready(); err != nil {
		j.health.lost(err)
		return 0, err
	}
	seq, err := j.write(t, payload, retain, qos)
	if err != nil {
		j.health.lost(err)
		return 0, err
	}
	return seq, nil
}

// Publish is Append for the appliance's own publishers (the Gerrit
// sources): a message the journal cannot take is delivered live only
// instead, so fan-out goes on while the disk is full. It never fails for
// the journal's sake; the loss is in status and in the next gap marker.
//
// In a cluster it returns the error instead (the source keeps the event
// and tries again), and names the event by its content (cluster.go).
func (j *Journal) Publish(t string, payload []byte, retain bool, qos byte) error {
	if j.cl != nil {
		return j.publishClustered(t, payload, retain, qos)
	}
	if _, err := j.Append(t, payload, retain, qos); err != nil {
		j.DeliverLive(t, payload, retain, qos)
	}
	return nil
}

// DeliverLive hands a message that could not be journaled straight to the
// fan-out, without a sequence number. In a cluster it does nothing: a
// message only this node's clients saw would break "every node delivers
// the same messages".
func (j *Journal) DeliverLive(t string, payload []byte, retain bool, qos byte) {
	if j.cl != nil {
		return
	}
	if d := j.deliver; d != nil {
		d(Message{Time: time.Now(), Topic: t, Payload: payload, Retain: retain, QoS: qos})
	}
}

// Reasons a message is not journaled. errRefused: this message only (not
// a topic, too large); the next one may well be journaled. errNoSpace: the
// disk is nearly full, so the journal stops writing before the store hits
// a write error (which nats-server keeps until it is restarted). Anything
// else is the store failing.
var (
	errRefused = errors.New("refused")
	errNoSpace = errors.New("disk nearly full")
	errFailing = errors.New("the journal is failing")
)

func (j *Journal) write(t string, payload []byte, retain bool, qos byte) (uint64, error) {
	m, err := j.message(t, payload, retain, qos)
	if err != nil {
		return 0, err
	}
	return j.publishMsg(m)
}

// message builds the stored form of a message, or says why the journal
// does not keep it.
func (j *Journal) message(t string, payload []byte, retain bool, qos byte) (*nats.Msg, error) {
	if !topic.ValidName(t) || t[0] == '$' {
		return nil, fmt.Errorf("%w: %w: %q is not a topic the journal keeps", ErrNotJournaled, errRefused, t)
	}
	subj := Subject(t, retain)
	if len(subj) > maxSubjectLen {
		return nil, fmt.Errorf("%w: %w: topic too long for the journal (%d bytes as a subject, at most %d)", ErrNotJournaled, errRefused, len(subj), maxSubjectLen)
	}
	if len(payload) > MaxPayload-1024 {
		return nil, fmt.Errorf("%w: %w: payload of %d bytes is over the journal's limit of %d", ErrNotJournaled, errRefused, len(payload), MaxPayload-1024)
	}
	m := &nats.Msg{Subject: subj, Data: payload, Header: nats.Header{hdrOrigin: []string{j.node}}}
	if qos > 0 {
		m.Header[hdrQoS] = []string{strconv.Itoa(int(qos))}
	}
	return m, nil
}

func (j *Journal) nextMsgID() string {
	return j.msgIDPrefix + strconv.FormatUint(j.msgIDs.Add(1), 36)
}

func (j *Journal) publishMsg(m *nats.Msg) (uint64, error) {
	if err := j.space.check(j.dir, j.reserve, len(m.Data)+len(m.Subject)+256); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNotJournaled, err)
	}
	var failing string // a store that fails to write does not answer; its log says why
	seq, spent, err := j.storeAsking(m, j.nextMsgID(), appendBudget, func(err error) (time.Duration, bool) {
		failing, _ = j.storeErr.Load().(string)
		switch {
		case !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) && !inProcess(err):
			failing = ""
			return 0, false
		case failing != "":
			return 0, false
		case inProcess(err):
			return 50 * time.Millisecond, true // the answer came at once: pace the asking
		}
		return 0, true
	})
	switch {
	case err == nil:
		return seq, nil
	case failing != "":
		return 0, fmt.Errorf("%w: no answer from the store within %s; it last said: %s", ErrNotJournaled, appendTimeout, failing)
	case spent:
		return 0, fmt.Errorf("%w: no answer from the store within %s: %w", ErrNotJournaled, appendBudget, err)
	}
	return 0, fmt.Errorf("%w: %w", ErrNotJournaled, err)
}

// storeAsking writes m under the message ID id and returns its sequence.
// A write that fails in a way again says may pass is asked again under the
// same ID (JetStream keeps the message once), after again's pause, until
// budget is spent (spent: the last error is the budget's).
func (j *Journal) storeAsking(m *nats.Msg, id string, budget time.Duration, again func(error) (time.Duration, bool)) (seq uint64, spent bool, err error) {
	giveUp := time.Now().Add(budget)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
		var ack *jetstream.PubAck
		ack, err = j.js().PublishMsg(ctx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamName))
		cancel()
		if err == nil {
			return ack.Sequence, false, nil
		}
		pause, ok := again(err)
		if !ok {
			return 0, false, err
		}
		if time.Now().After(giveUp) {
			return 0, true, err
		}
		time.Sleep(pause)
	}
}

// inProcess reports the answer to a write asked again under the same
// message ID while the first attempt, which timed out, is still being
// stored (JSStreamDuplicateMessageConflict): not a refusal, as the first
// may yet land. Asked again once it has, the stream answers with its
// sequence; a leader that cannot store it (no quorum) keeps answering
// this until the write's time is up.
func inProcess(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeMsgIDInProcess
}

const errCodeMsgIDInProcess = 10158

// space keeps the journal from filling the disk: the free space is looked
// up again whenever the bytes written since the last look could have used
// the margin above the reserve, and at least once a second.
type space struct {
	mu      sync.Mutex
	at      time.Time
	free    uint64
	written uint64
}

func (s *space) check(dir string, reserve uint64, n int) error {
	if reserve == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written += uint64(n)
	if time.Since(s.at) > time.Second || s.written+reserve >= s.free {
		free, err := diskFree(dir)
		if err != nil {
			return nil // the store will say what is wrong
		}
		s.at, s.free, s.written = time.Now(), free, uint64(n)
	}
	if s.free < reserve+s.written {
		return fmt.Errorf("%w: %d bytes free on the journal's disk, it leaves %d for the system", errNoSpace, s.free, reserve)
	}
	return nil
}

func diskFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// health tracks whether the journal can write. While it cannot, messages
// go out live only and are counted; the first write after that is a gap
// marker saying how many and when.
type health struct {
	mu      sync.Mutex
	failing bool
	since   time.Time // first loss of the current outage
	last    time.Time // latest loss
	count   int64     // losses in the current outage
	reason  string
	// paced: the store or the disk is failing, not one message; attempts
	// to write again wait for nextTry.
	paced   bool
	nextTry time.Time
	// restart: the store has failed a write and keeps failing every write
	// (nats-server keeps a write error) until the server is restarted.
	restart bool

	totalLost int64
	gaps      int64
	lastGap   *Gap
	lastGapAt uint64

	recovering sync.Mutex // one recovery at a time
	stop       chan struct{}
	stopOnce   sync.Once
}

// lost records a message that could not be journaled.
func (h *health) lost(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if !h.failing {
		h.failing, h.since = true, now
	}
	h.last = now
	h.count++
	h.totalLost++
	if errors.Is(err, errFailing) {
		return // already known to be failing; keep the first reason
	}
	h.reason = strings.TrimPrefix(err.Error(), ErrNotJournaled.Error()+": ")
	if !errors.Is(err, errRefused) {
		h.paced = true
		if !errors.Is(err, errNoSpace) {
			h.restart = true
		}
	}
}

// recoverEvery paces attempts to write again while the store or the disk
// fails, so a flood of publishes does not turn into a flood of doomed
// writes, restarts and log lines. minFree is the free space the journal
// leaves on its disk.
const (
	recoverEvery = 2 * time.Second
	minFree      = 8 << 20
)

// ready returns nil when the journal may write: it is healthy, or it was
// failing and has just written its gap marker. Otherwise it returns why
// not, cheaply.
func (j *Journal) ready() error {
	h := &j.health
	h.mu.Lock()
	if !h.failing {
		h.mu.Unlock()
		return nil
	}
	if h.paced && time.Now().Before(h.nextTry) {
		reason := h.reason
		h.mu.Unlock()
		return fmt.Errorf("%w: %w: %s", ErrNotJournaled, errFailing, reason)
	}
	h.mu.Unlock()
	return j.recover()
}

// recover ends an outage by writing its gap marker, restarting a store
// that keeps a write error first.
func (j *Journal) recover() error {
	h := &j.health
	h.recovering.Lock()
	defer h.recovering.Unlock()
	h.mu.Lock()
	if !h.failing {
		h.mu.Unlock()
		return nil
	}
	h.nextTry = time.Now().Add(recoverEvery)
	restart := h.restart
	gap := Gap{Lost: h.count, From: h.since.UTC(), Until: h.last.UTC(), Reason: h.reason}
	h.mu.Unlock()

	failing := func(err error) error {
		return fmt.Errorf("%w: %w: %s (%v)", ErrNotJournaled, errFailing, gap.Reason, err)
	}
	// Twice the reserve before writing again, so that a disk hovering at
	// the reserve does not turn into one gap marker per retry.
	if free, err := diskFree(j.dir); err == nil && free < 2*j.reserve {
		return failing(fmt.Errorf("%d bytes free, waiting for %d", free, 2*j.reserve))
	}
	if restart {
		if err := j.restartServer(); err != nil {
			j.log.Error("journal: restarting the store", "error", err)
			return failing(err)
		}
		h.mu.Lock()
		h.restart = false
		h.mu.Unlock()
	}
	body, _ := json.Marshal(gap)
	seq, err := j.publishMsg(&nats.Msg{Subject: gapSubject, Data: body, Header: nats.Header{hdrOrigin: []string{j.node}}})
	if err != nil {
		h.mu.Lock()
		h.paced = true
		if !errors.Is(err, errNoSpace) {
			h.restart = true
		}
		h.mu.Unlock()
		return failing(err)
	}
	h.mu.Lock()
	// Messages lost while the marker was being written go in the next one.
	h.count -= gap.Lost
	if h.count <= 0 {
		h.failing, h.paced, h.restart, h.count, h.reason = false, false, false, 0, ""
	} else {
		h.since = h.last
	}
	h.gaps++
	h.lastGap, h.lastGapAt = &gap, seq
	h.mu.Unlock()
	j.log.Warn("journal writing again; gap marker written", "seq", seq, "lost", gap.Lost, "from", gap.From, "until", gap.Until, "reason", gap.Reason)
	return nil
}

// restartServer replaces the embedded server with a new one on the same
// store: nats-server keeps a write error (such as a full disk) and refuses
// every later write until its store is reopened. Readers on the old
// connection end (an SSE client reconnects with Last-Event-ID); the
// fan-out consumer goes on from the last message it delivered.
func (j *Journal) restartServer() error {
	old := j.conn.Load()
	j.stopFanIterator()
	old.close()
	c, err := j.startServer()
	if err != nil {
		// Keep a closed connection in place: every use fails, and the next
		// recovery tries again.
		return err
	}
	j.conn.Store(c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j.cfgMu.Lock()
	cfg := j.cfg
	j.cfgMu.Unlock()
	return j.ensureStreams(ctx, cfg)
}

func (j *Journal) stopHealth() {
	j.health.stopOnce.Do(func() {
		if j.health.stop != nil {
			close(j.health.stop)
		}
	})
}
