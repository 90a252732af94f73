package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// ServeWebsocket adds a listener speaking MQTT over websockets on l, at paths
// "/" and "/mqtt". wrap, if not nil, wraps the HTTP handler (the ACME HTTP-01
// challenge shares port 80 this way). mochi's own websocket listener binds its
// own address, so it cannot serve a socket from systemd; this one can.
func (b *Broker) ServeWebsocket(name string, l net.Listener, source string, tls bool, wrap func(http.Handler) http.Handler) error {
	b.addListener(name, l, source, tls)
	return b.server.AddListener(&wsListener{id: name, l: &admitListener{Listener: l, t: &b.conns, http: true}, b: b, wrap: wrap})
}

// wsWriteBuffers is shared by every websocket listener.
var wsWriteBuffers sync.Pool

type wsListener struct {
	id   string
	l    net.Listener
	b    *Broker
	wrap func(http.Handler) http.Handler

	mu  sync.Mutex // srv is set by Serve and read by Close, on other goroutines
	srv *http.Server
}

func (w *wsListener) Init(*slog.Logger) error { return nil }
func (w *wsListener) ID() string              { return w.id }
func (w *wsListener) Address() string         { return w.l.Addr().String() }
func (w *wsListener) Protocol() string        { return "ws" }

// Serve serves HTTP on the port until the upgrade: every connection is
// counted against max_clients and max_connections_per_address from accept
// (admitListener), and must finish its request, its upgrade and then its
// MQTT CONNECT within connect_timeout; a keep-alive connection idle between
// requests is closed after it too, and any answer other than the upgrade
// closes the connection.
func (w *wsListener) Serve(establish listeners.EstablishFn) {
	timeout := time.Duration(w.b.connectTimeout.Load())
	up := &websocket.Upgrader{
		HandshakeTimeout: timeout,
		Subprotocols:     []string{"mqtt", "mqttv3.1"},
		// A public bus: pages on any origin may subscribe.
		CheckOrigin:     func(*http.Request) bool { return true },
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		// Write buffers are borrowed per message, not held by every idle
		// connection.
		WriteBufferPool: &wsWriteBuffers,
	}
	mux := http.NewServeMux()
	handle := func(rw http.ResponseWriter, r *http.Request) {
		if !websocket.IsWebSocketUpgrade(r) {
			rw.Header().Set("Connection", "close")
			http.Error(rw, "This is an MQTT-over-websockets endpoint: connect with an MQTT client (subprotocol \"mqtt\").", http.StatusUpgradeRequired)
			return
		}
		c, err := up.Upgrade(rw, r, nil)
		if err != nil {
			return // the upgrader has answered the client
		}
		if tc := unwrap[*trackedConn](c.UnderlyingConn()); tc != nil {
			tc.state.Store(stateUpgraded)
		}
		conn := w.b.accepted(&wsConn{Conn: c.UnderlyingConn(), ws: c})
		if err := establish(w.id, conn); err != nil {
			w.b.log.Debug("client ended", "listener", w.id, "remote", c.RemoteAddr().String(), "error", err)
		}
	}
	mux.HandleFunc("/{$}", handle)
	mux.HandleFunc("/mqtt", handle)
	var h http.Handler = mux
	if w.wrap != nil {
		h = w.wrap(h)
	}
	srv := &http.Server{
		Handler: servedHandler(h),
		// servedHandler finds the connection of a request here.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ReadHeaderTimeout: timeout,
		ReadTimeout:       timeout,
		WriteTimeout:      timeout,
		IdleTimeout:       timeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(w.b.log.Handler(), slog.LevelDebug),
	}
	w.mu.Lock()
	w.srv = srv
	w.mu.Unlock()
	_ = srv.Serve(w.l)
}

type connKey struct{}

// servedHandler marks a connection whose request arrived whole: the server's
// closing it later (after the answer, or idle) is no refusal, whereas one
// that never finished its request within connect_timeout is.
func servedHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			if tc := unwrap[*trackedConn](c); tc != nil {
				tc.state.CompareAndSwap(stateRaw, stateServed)
			}
		}
		h.ServeHTTP(rw, r)
	})
}

func (w *wsListener) Close(closeClients listeners.CloseFn) {
	w.mu.Lock()
	srv := w.srv
	w.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	_ = w.l.Close()
	closeClients(w.id)
}

// wsConn is a websocket as the byte stream MQTT expects: binary messages are
// read back to back, and each write is one message. mochi serialises its
// writes, which is what gorilla requires.
type wsConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader
}

var errTextFrame = errors.New("websocket text message: MQTT needs binary messages")

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errTextFrame
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }

// NetConn returns the connection under the websocket.
func (c *wsConn) NetConn() net.Conn { return c.Conn }
