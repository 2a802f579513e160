// Package storage is where backups live: one small interface with a local
// directory backend (storage/file) and an S3 backend (storage/s3), plus the
// catalog that knows how a backup is laid out as objects and manifests.
package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned by Get and Delete when no object has the key.
var ErrNotFound = errors.New("not found")

// ErrNoSpace is wrapped by a store's error when the store answered that it
// is full: its file system out of space or inodes, a disk quota used up,
// an S3 server's 507 InsufficientStorage or a quota refusal. What the
// failed write began was not kept, and what else a failed capture stored
// holds room a retry needs: the capture removes it at once rather than
// leave it to prune's grace.
var ErrNoSpace = errors.New("storage full")

// NoSpace returns err marked as a store's answer that it is full: it reads
// as err does, and errors.Is finds ErrNoSpace as well as everything err
// wraps (syscall.ENOSPC, an S3 API error). nil stays nil.
func NoSpace(err error) error {
	if err == nil || errors.Is(err, ErrNoSpace) {
		return err
	}
	return noSpaceError{err}
}

type noSpaceError struct{ err error }

func (e noSpaceError) Error() string   { return e.err.Error() }
func (e noSpaceError) Unwrap() []error { return []error{e.err, ErrNoSpace} }

// Object describes one stored object.
type Object struct {
	Key      string // relative to the store's root
	Size     int64
	Modified time.Time
}

// Store is the whole contract a backend offers. Keys are slash-separated and
// relative to the location the store was opened at.
type Store interface {
	// Put streams r into key. The object becomes visible only once r has
	// returned io.EOF and the backend has committed every byte; if r returns
	// any other error, or ctx ends, nothing is left under key (a multipart
	// upload is aborted, a temporary file removed) and the error is returned.
	// Put never buffers the whole of r: memory is bounded by the backend's
	// configuration. It returns the number of bytes stored.
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	// Get opens key for streaming reads.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// List returns every object whose key starts with prefix, in key order.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes key. Deleting a missing key returns ErrNotFound.
	Delete(ctx context.Context, key string) error
}

// Signer is implemented by backends that can hand out time-limited URLs.
type Signer interface {
	PresignGet(ctx context.Context, key string, expires time.Duration) (string, error)
}

// Describer is implemented by backends that can say where a key lives in
// terms an operator recognizes (s3://bucket/prefix/key, /var/lib/...).
type Describer interface {
	Location(key string) string
}
