// Package control owns the daemon's local control API: HTTP and JSON over a
// unix socket, routes under /v0/, and the client firehosectl uses to reach
// it. Who may do what is decided from the peer's kernel credentials
// (SO_PEERCRED), never from anything the request says. It knows nothing of
// the broker: it serves whatever Daemon it is given.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firehose/firehose/appliance/apitype"
)

// Daemon is what the control API exposes.
type Daemon interface {
	Status() *apitype.Status
	Reload() error
}

// Group is the group whose members may change the daemon (besides root and
// the daemon's own user).
const Group = "firehose"

// Server serves the control API on a unix socket.
type Server struct {
	d    Daemon
	log  *slog.Logger
	srv  *http.Server
	ln   net.Listener
	path string
}

type credKey struct{}

// Listen creates the socket at path (replacing a stale one) and serves d.
// The socket is world-connectable: the public view of status is public like
// the bus itself; the rest, and changing anything, is checked per request
// from the peer's credentials.
func Listen(path string, d Daemon, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another firehose daemon is running", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	s := &Server{d: d, log: log, ln: ln, path: path}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v0/status", s.status)
	mux.HandleFunc("POST /v0/reload", s.reload)
	s.srv = &http.Server{
		Handler:           refuseBrowsers(mux),
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, credKey{}, peerCred(c))
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops serving and removes the socket.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	_ = os.Remove(s.path)
}

// refuseBrowsers rejects requests a web page could have made: a local socket
// is no place for cross-site requests, whatever proxy might forward them.
func refuseBrowsers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" {
			writeJSON(w, http.StatusForbidden, apitype.ErrorResponse{Err: "requests with Origin or Referer are refused"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// status serves the whole status to those who may change the daemon (they
// can read its config anyway) and the public view to everyone else: the
// socket is world-connectable, and a reload error, a Gerrit source or a
// certificate path quotes the config, secrets included.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.d.Status()
	if cred, _ := r.Context().Value(credKey{}).(*unix.Ucred); mayChange(cred) != nil {
		st = PublicView(st)
	}
	writeJSON(w, http.StatusOK, st)
}

// PublicView keeps what any local user may see: what the bus publishes in
// $SYS (clients, subscriptions, messages), what `ss -ltn` shows (listener
// addresses), the version and uptime, and whether the appliance is healthy,
// but no reason, name, path or error taken from the config. It copies field
// by field, so a field added later stays private until it is added here.
func PublicView(st *apitype.Status) *apitype.Status {
	pub := &apitype.Status{
		Version:       st.Version,
		Config:        st.Config,
		Started:       st.Started,
		UptimeSeconds: st.UptimeSeconds,
		State:         st.State,
		Listeners:     st.Listeners,
		Clients:       st.Clients,
		Subscriptions: st.Subscriptions,
		Messages:      st.Messages,
		Redacted:      true,
	}
	if n := len(st.Reasons); n > 0 {
		pub.Reasons = []string{fmt.Sprintf("%d problem(s); the details quote the config, so only root, the daemon's user and group %q see them (sudo firehosectl status)", n, Group)}
	}
	if r := st.LastReload; r != nil {
		pub.LastReload = &apitype.Reload{Time: r.Time, OK: r.OK}
	}
	return pub
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	cred, _ := r.Context().Value(credKey{}).(*unix.Ucred)
	if err := mayChange(cred); err != nil {
		writeJSON(w, http.StatusForbidden, apitype.ErrorResponse{Err: err.Error()})
		return
	}
	s.log.Info("reload requested", "uid", cred.Uid, "pid", cred.Pid)
	if err := s.d.Reload(); err != nil {
		writeJSON(w, http.StatusOK, apitype.ReloadResponse{Reloaded: false, Err: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, apitype.ReloadResponse{Reloaded: true})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func peerCred(c net.Conn) *unix.Ucred {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	return cred
}

// mayChange allows root, the daemon's own user (systemd's ExecReload runs as
// it), and members of the firehose group, who can also read the config; they
// alone see the whole status.
func mayChange(cred *unix.Ucred) error {
	if cred == nil {
		return errors.New("cannot tell who is asking (no peer credentials)")
	}
	if cred.Uid == 0 || int(cred.Uid) == os.Getuid() {
		return nil
	}
	if g, err := user.LookupGroup(Group); err == nil {
		if gid, _ := strconv.Atoi(g.Gid); inGroup(cred, gid) {
			return nil
		}
	}
	return fmt.Errorf("permission denied: uid %d is not root and not in group %q", cred.Uid, Group)
}

// inGroup checks the peer's primary and supplementary groups; the kernel
// gives only the primary one with the socket, the rest come from /proc.
func inGroup(cred *unix.Ucred, gid int) bool {
	if int(cred.Gid) == gid {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(cred.Pid)) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, f := range strings.Fields(rest) {
				if f == strconv.Itoa(gid) {
					return true
				}
			}
		}
	}
	return false
}
