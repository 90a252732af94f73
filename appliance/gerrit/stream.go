package gerrit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/firehose/firehose/appliance/apitype"
)

// The SSH side of a source: one connection running stream-events, its
// reader and its keepalive.

const streamCommand = "gerrit stream-events"

// dial opens an SSH connection with the host key checked against
// known_hosts. Files are read anew at every attempt.
func (s *source) dial(ctx context.Context) (*ssh.Client, error) {
	signer, err := loadSigner(s.cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	check, algos, err := hostKeys(s.cfg.KnownHosts, s.addr)
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	var hostErr error
	cfg := &ssh.ClientConfig{
		User: s.cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			err := check(host, remote, key)
			var ke *knownhosts.KeyError
			if errors.As(err, &ke) {
				hostErr = &HostKeyError{
					Host:        knownhosts.Normalize(host),
					KnownHosts:  s.cfg.KnownHosts,
					Type:        key.Type(),
					Fingerprint: ssh.FingerprintSHA256(key),
					Mismatch:    len(ke.Want) > 0,
				}
				return hostErr
			}
			return err
		},
		HostKeyAlgorithms: algos,
		Timeout:           s.opts.dialTimeout,
	}
	d := net.Dialer{Timeout: s.opts.dialTimeout, KeepAlive: -1}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	// The handshake has no context: a deadline and a close on cancel bound it.
	conn.SetDeadline(time.Now().Add(s.opts.dialTimeout))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, s.addr, cfg)
	stop()
	if err != nil {
		conn.Close()
		if hostErr != nil {
			return nil, hostErr
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// stderrTail keeps the start of what the server wrote on stderr, for the
// error message when the command ends ("fatal: ... not permitted").
type stderrTail struct {
	mu  sync.Mutex
	buf []byte
}

func (b *stderrTail) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 1024 - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *stderrTail) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(strings.ToValidUTF8(string(b.buf), "\uFFFD"))
}

// stream runs one connection until it fails. It returns how long the
// connection lived and why it ended.
func (s *source) stream(ctx context.Context) (time.Duration, error) {
	s.setState(apitype.GerritConnecting)
	// Taken before the stream starts: a first position must not skip events
	// created while the session was being set up.
	attempted := s.opts.now()
	client, err := s.dial(ctx)
	if err != nil {
		return 0, err
	}
	connCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		client.Close()
		wg.Wait()
	}()

	sess, err := client.NewSession()
	if err != nil {
		return 0, fmt.Errorf("opening a session: %w", err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return 0, err
	}
	stderr := &stderrTail{}
	sess.Stderr = stderr
	if err := sess.Start(streamCommand); err != nil {
		return 0, fmt.Errorf("starting %q: %w", streamCommand, err)
	}
	connected := s.opts.now()
	s.update(func(st *apitype.GerritSource) { st.ConnectedSince = &connected })
	s.log.Info("connected", "server", s.addr)

	var deadMu sync.Mutex
	var deadErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.keepalive(connCtx, client, func(err error) {
			deadMu.Lock()
			deadErr = err
			deadMu.Unlock()
			client.Close()
		})
	}()

	// The reader never blocks on processing: a stalled SSH reader makes
	// Gerrit drop events for this session. When pending is full it drops
	// lines itself, and marks the place with a nil line once there is room:
	// a gap like the ones Gerrit announces with dropped-output.
	pending := newQueue[[]byte](s.opts.pendingLen, s.opts.queueBytes)
	readErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		lost := false
		err := readLines(stdout, s.opts.maxLine, func(line []byte, tooLong bool) error {
			switch {
			case tooLong:
				n := s.count(func(st *apitype.GerritSource) *int64 { return &st.LinesTooLong })
				s.log.Warn("skipped a line longer than the limit", "limit", s.opts.maxLine, "count", n)
			case len(bytes.TrimSpace(line)) == 0:
			// After a loss, the nil marker goes first; no room for it means
			// this line is lost too.
			case lost && !pending.push(nil, 0), !pending.push(line, len(line)):
				lost = true
				s.overflow()
			default:
				lost = false
			}
			return nil
		})
		readErr <- err
		pending.close()
	}()

	s.begin(connCtx, attempted)
	for {
		line, ok := pending.pop(connCtx, lineSize)
		if !ok {
			break
		}
		s.handleLine(connCtx, line)
	}
	lived := s.opts.now().Sub(connected)
	if ctx.Err() != nil {
		return lived, ctx.Err()
	}
	deadMu.Lock()
	err = deadErr
	deadMu.Unlock()
	if err != nil {
		return lived, err
	}
	rerr := <-readErr
	// Say why the command ended, when the server told us.
	waited := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		waited <- sess.Wait()
	}()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(2 * time.Second):
	}
	msg := streamCommand + " ended"
	switch {
	case rerr != nil:
		msg += ": " + rerr.Error()
	case werr != nil:
		msg += ": " + werr.Error()
	}
	if e := stderr.String(); e != "" {
		msg += ": " + truncate([]byte(e), 300)
		if strings.Contains(e, "not permitted") || strings.Contains(e, "capability") {
			msg += " (the account needs the Stream Events global capability)"
		}
	}
	return lived, errors.New(msg)
}

// keepalive detects a half-open connection: a request the server does not
// answer within misses×interval means nothing will come any more.
func (s *source) keepalive(ctx context.Context, c ssh.Conn, dead func(error)) {
	interval := s.opts.keepalive
	if interval <= 0 {
		interval = s.cfg.Keepalive.D()
	}
	if interval <= 0 {
		interval = 15 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var reply chan error // nil when no request is in flight
	var sent time.Time
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-reply:
			if err != nil {
				return // the connection is closing; the reader will say why
			}
			reply, misses = nil, 0
		case <-t.C:
			if reply != nil {
				misses++
				if misses >= s.opts.keepaliveMisses {
					dead(fmt.Errorf("keepalive: no answer from %s for %s; connection presumed dead", s.addr, time.Since(sent).Round(time.Millisecond)))
					return
				}
				continue
			}
			reply, sent = make(chan error, 1), time.Now()
			go func(ch chan error) {
				_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
				ch <- err
			}(reply)
		}
	}
}
