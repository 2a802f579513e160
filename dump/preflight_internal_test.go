package dump

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgbackups/pgbackups/internal/testenv"
)

// TestPreflightBounded: a server, or the network to it, that goes silent
// once a connection is made (here a proxy frozen right after the
// handshake) fails pre-flight after preflightTimeout, saying so, instead of
// holding the run until TCP keepalives give up.
func TestPreflightBounded(t *testing.T) {
	pg := testenv.PG(t)
	proxy := testenv.FreezingProxy(t, fmt.Sprintf("%s:%d", pg.Host, pg.Port))
	c, err := ParseConn(fmt.Sprintf("postgres://%s:%s@%s/postgres?sslmode=disable", pg.User, pg.Password, proxy.Addr))
	if err != nil {
		t.Fatal(err)
	}
	c.cfg.AfterConnect = func(context.Context, *pgconn.PgConn) error {
		proxy.Frozen.Store(true)
		return nil
	}
	defer proxy.Frozen.Store(false)
	defer func(d time.Duration) { preflightTimeout = d }(preflightTimeout)
	preflightTimeout = time.Second

	done := make(chan error, 1)
	go func() {
		_, err := Preflight(t.Context(), c)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no answer within 1s") {
			t.Fatalf("pre-flight through a silent connection: %v; want it bounded, saying so", err)
		}
		if strings.Contains(err.Error(), pg.Password) {
			t.Errorf("the error shows the password: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("pre-flight through a silent connection still waits 30 s later")
	}
}
