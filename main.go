// Command pgbackups keeps a PostgreSQL database backed up: pg_dump on a
// schedule, streamed through zstd into S3 or a local directory, with the
// commands to list, download, verify and restore what it stored.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pgbackups/pgbackups/dump"
)

// Set by the build: go build -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	// The first SIGINT or SIGTERM cancels ctx with an interrupted cause, so
	// Run can tell an interrupted command (exit 128+signal) from a failed
	// one. signal.NotifyContext's own cause names the signal only in text.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		cancel(interrupted{s.(syscall.Signal)})
		// After the first signal cancels ctx, a second one exits at once.
		// Nothing partial becomes visible: an unfinished multipart upload is
		// invisible, a temporary file is never listed, and pg_dump dies with
		// us (Pdeathsig). The signals stay caught: the default action would
		// kill us without removing the passfiles.
		<-sigs
		fmt.Fprintln(os.Stderr, "pgbackups: second signal, exiting now")
		// os.Exit skips deferred calls: the passfiles handed to children
		// (which hold the password) and a restore's temporary archive would
		// stay in $TMPDIR.
		dump.RemoveTempFiles()
		os.Exit(exitFailure)
	}()
	m := NewMain()
	code := m.Run(ctx, os.Args[1:])
	m.Close()
	os.Exit(code)
}
