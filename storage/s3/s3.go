// Package s3 stores backups in an S3 bucket (AWS or any S3-compatible server
// such as VersityGW or MinIO) under an optional key prefix.
//
// Uploads stream: a dump is cut into parts of PartSize bytes and sent as a
// multipart upload, Concurrency parts at a time, so memory is bounded by
// PartSize x Concurrency (plus two parts the SDK uploader keeps: the first,
// read on its own, and one spare) whatever the size of the dump.
//
// The uploader is the SDK's feature/s3/manager, deprecated in favour of
// feature/s3/transfermanager; it is the one with a settled API for streaming
// an unseekable body, and it is what Put's guarantees were tested against.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/pgbackups/pgbackups/storage"
)

var (
	_ storage.Store     = (*Store)(nil)
	_ storage.Signer    = (*Store)(nil)
	_ storage.Describer = (*Store)(nil)
)

// ErrNoRegion is New's error when neither Options nor the SDK's sources
// (AWS_REGION, shared config) give a region: a configuration mistake.
var ErrNoRegion = errors.New("s3: no region: set the region option or AWS_REGION")

const (
	// MiB is one mebibyte, the unit part sizes are rounded to.
	MiB = 1 << 20

	// MinPartSize is S3's smallest allowed part (all but the last).
	MinPartSize = 5 * MiB
	// MaxPartSize is S3's largest allowed part.
	MaxPartSize = 5 << 30
	// MaxParts is S3's limit on parts in one multipart upload.
	MaxParts = 10000

	// DefaultPartSize is used when Options.PartSize is zero. With it, Put
	// without a size hint can store objects up to 160 GiB (16 MiB x 10,000).
	DefaultPartSize = 16 * MiB
	// DefaultConcurrency is used when Options.Concurrency is zero.
	DefaultConcurrency = 4

	// abortTimeout bounds the AbortMultipartUpload sent after a failed Put.
	// It runs on a context detached from the caller's, which may already be
	// cancelled: that is often why the upload failed.
	abortTimeout = 30 * time.Second
)

// Options configures a Store. Only Bucket is required; everything else falls
// back to the AWS SDK's defaults (environment, shared config, instance role).
type Options struct {
	// Bucket is the bucket name (required).
	Bucket string
	// Prefix is the "directory" keys live under; leading and trailing
	// slashes are ignored.
	Prefix string
	// Region defaults to the SDK's (AWS_REGION, shared config), and to
	// us-east-1 when a custom endpoint is set and nothing else says.
	Region string
	// Endpoint is a custom S3 endpoint such as http://127.0.0.1:7070.
	// AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL are honoured when empty.
	Endpoint string
	// PathStyle selects path-style addressing (endpoint/bucket/key). Nil
	// means true when a custom endpoint is in effect and false on AWS.
	PathStyle *bool
	// AccessKeyID and SecretAccessKey are static credentials; when empty the
	// SDK's default credential chain is used.
	AccessKeyID     string
	SecretAccessKey string
	// PartSize is the size of each uploaded part (at least 5 MiB). It also
	// caps the object Put can store without a size hint at PartSize x 10,000.
	PartSize int64
	// Concurrency is how many parts are uploaded at once.
	Concurrency int
	// HTTPClient replaces the SDK's HTTP client when set.
	HTTPClient *http.Client
	// ReadStall fails a request whose answer does not begin this long
	// after it was sent, and a Get whose response or body moves no byte
	// for this long: an endpoint that accepts a connection and then never
	// answers would otherwise hang list, prune or a restore for ever. With
	// HTTPClient set, the bound on requests is that client's. 0 never.
	ReadStall time.Duration
}

// Store is a storage.Store backed by one S3 bucket and prefix. It is safe
// for concurrent use.
type Store struct {
	bucket      string
	prefix      string // no leading or trailing slash; may be empty
	region      string // requests are signed for; named in errors
	partSize    int64
	concurrency int

	client    *s3.Client
	presign   *s3.PresignClient
	uploader  *manager.Uploader
	readStall time.Duration
}

// New builds the S3 client and uploader once for the life of the Store. It
// sends no request: a wrong bucket or credentials show up on first use.
func New(ctx context.Context, opts Options) (*Store, error) {
	if err := validBucket(opts.Bucket); err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	partSize := opts.PartSize
	if partSize <= 0 {
		partSize = DefaultPartSize
	}
	if partSize < MinPartSize || partSize > MaxPartSize {
		return nil, fmt.Errorf("s3: part size %d out of range [%d, %d]", partSize, MinPartSize, MaxPartSize)
	}
	concurrency := opts.Concurrency
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}

	loadOpts := []func(*config.LoadOptions) error{
		// Checksums only where an operation demands them. The default
		// (WhenSupported) adds CRC32 trailers that some S3-compatible
		// servers reject, and for an unseekable body it cannot compute a
		// checksum up front.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if opts.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(opts.Region))
	}
	if opts.AccessKeyID != "" || opts.SecretAccessKey != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKeyID, opts.SecretAccessKey, "")))
	}
	switch {
	case opts.HTTPClient != nil:
		loadOpts = append(loadOpts, config.WithHTTPClient(opts.HTTPClient))
	case opts.ReadStall > 0:
		// Every request's answer, once the request is sent, within
		// ReadStall: a List, Head or Delete to an endpoint that stopped
		// answering would otherwise hang list, latest and prune for ever
		// (Get's body has its own watch; an upload's, the capture's).
		loadOpts = append(loadOpts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.ResponseHeaderTimeout = opts.ReadStall
		})))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load aws config: %w", err)
	}

	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		// Runs after the SDK resolved AWS_ENDPOINT_URL(_S3) into
		// BaseEndpoint, so "custom endpoint" covers the environment too.
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		custom := o.BaseEndpoint != nil
		if opts.PathStyle != nil {
			o.UsePathStyle = *opts.PathStyle
		} else {
			o.UsePathStyle = custom
		}
		if o.Region == "" && custom {
			o.Region = "us-east-1"
		}
		if opts.ReadStall > 0 {
			// A request unanswered for ReadStall is an endpoint that
			// stopped answering, not a blip: tried three times, a List
			// took three stalls (an hour and a half at the default) to
			// fail.
			if r, ok := o.Retryer.(aws.RetryerV2); ok {
				o.Retryer = stallRetryer{r}
			}
		}
	})
	if client.Options().Region == "" {
		return nil, ErrNoRegion
	}

	uploader := manager.NewUploader(client, func(u *manager.Uploader) {
		u.PartSize = partSize
		u.Concurrency = concurrency
		u.MaxUploadParts = MaxParts
		// The uploader has its own checksum switch; without this it asks
		// for CRC32 on every part.
		u.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		// Abort on failure (the default, spelled out because Put's
		// guarantee depends on it; Put also aborts on its own, see abort).
		u.LeavePartsOnError = false
	})

	return &Store{
		bucket:      opts.Bucket,
		prefix:      strings.Trim(opts.Prefix, "/"),
		region:      client.Options().Region,
		partSize:    partSize,
		concurrency: concurrency,
		client:      client,
		presign:     s3.NewPresignClient(client),
		uploader:    uploader,
		readStall:   opts.ReadStall,
	}, nil
}

// Location returns s3://bucket/prefix/key.
func (s *Store) Location(key string) string {
	return "s3://" + s.bucket + "/" + s.objectKey(key)
}

// Put streams r into key; see storage.Store. The object may be at most
// PartSize x 10,000 bytes: callers that know roughly how big the stream
// will be should use PutSized.
//
// Put notices ctx between reads of r; a Read that blocks is the caller's to
// end (close the pipe with an error).
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	return s.PutSized(ctx, key, r, 0)
}

// PutSized is Put with a hint of how many bytes r will yield (0 if unknown).
// The part size is raised with PartSizeFor so that a stream 25% larger than
// the hint still fits in S3's 10,000 parts.
//
// Why a hint and not parts that grow as the stream does: the SDK's
// uploader uses one part size per upload, and the capture knows the
// database size before it starts (pg_database_size), which bounds the dump.
// Raising the size only for big dumps keeps memory at PartSize x
// Concurrency for the common case.
func (s *Store) PutSized(ctx context.Context, key string, r io.Reader, sizeHint int64) (int64, error) {
	loc := s.Location(key)
	if err := validKey(key); err != nil {
		return 0, fmt.Errorf("s3: put %s: %w", loc, err)
	}
	partSize := PartSizeFor(sizeHint, s.partSize)
	body := &countingReader{ctx: ctx, r: r}
	_, err := s.uploader.Upload(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.objectKey(key)),
		Body:   body,
	}, func(u *manager.Uploader) {
		u.PartSize = partSize
		// Parts grown for a huge dump would multiply memory by the
		// concurrency: keep the buffers within the configured budget
		// (PartSize x Concurrency), down to one part in flight.
		if partSize > s.partSize {
			u.Concurrency = max(1, int(s.partSize*int64(s.concurrency)/partSize))
		}
	})
	if err != nil {
		if abortErr := s.abort(ctx, key, err); abortErr != nil {
			return body.n, fmt.Errorf("s3: put %s: %w (abort: %v)", loc, s.explain(err), abortErr)
		}
		return body.n, fmt.Errorf("s3: put %s: %w", loc, s.explain(err))
	}
	return body.n, nil
}

// abort makes sure a failed multipart upload leaves no parts behind. The
// uploader aborts on failure itself, but with the upload's own context: when
// that context was cancelled (SIGTERM during a capture) its abort request
// fails at once and the parts stay, billed, until a lifecycle rule removes
// them. So abort again on a context detached from cancellation; S3 answers
// NoSuchUpload if the uploader's abort got there first.
//
// A cancel can also land while CreateMultipartUpload is in flight: the
// server creates the upload but the client never learns its id. Backup keys
// are unique, so every unfinished upload under exactly this key is ours to
// abort; they are listed and aborted too.
func (s *Store) abort(ctx context.Context, key string, uploadErr error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	objKey := s.objectKey(key)
	var ids []string
	var mu manager.MultiUploadFailure
	if errors.As(uploadErr, &mu) && mu.UploadID() != "" {
		ids = append(ids, mu.UploadID())
	}
	if listed, err := s.uploadIDs(ctx, objKey); err == nil {
		ids = append(ids, listed...)
	}
	slices.Sort(ids)
	return s.abortUploads(ctx, objKey, slices.Compact(ids))
}

// Get opens key for streaming reads. A missing key returns an error that
// wraps storage.ErrNotFound.
//
// The body resumes a read that breaks (a reset, a proxy's idle timeout, a
// stall): it asks again for the rest of the same object, from the byte it
// had reached, so a multi-GB restore does not fail at its worst moment; see
// body.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	loc := s.Location(key)
	if err := validKey(key); err != nil {
		return nil, fmt.Errorf("s3: get %s: %w", loc, err)
	}
	// Close cancels reqCtx: it ends a resume in flight, not only the
	// response being read.
	reqCtx, cancel := context.WithCancel(ctx)
	out, stall, err := s.getObject(reqCtx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.objectKey(key)),
	})
	if err != nil {
		cancel()
		if isNotFound(err) {
			return nil, fmt.Errorf("s3: get %s: %w", loc, storage.ErrNotFound)
		}
		return nil, fmt.Errorf("s3: get %s: %w", loc, s.explain(err))
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return &body{
		s: s, ctx: ctx, reqCtx: reqCtx, cancel: cancel,
		key: s.objectKey(key), loc: loc, etag: aws.ToString(out.ETag), size: size,
		rc: out.Body, stall: stall,
	}, nil
}

// getObject sends in under a stallWatch of its own (nil without
// ReadStall), which it leaves stopped once the response has begun: from
// there the clock runs only while a Read waits, because a reader that
// pauses (pg_restore waiting for a lock on the target, a full pipe
// downstream) is not S3 stalling. An error names the stall when the watch
// ended the request.
func (s *Store) getObject(ctx context.Context, in *s3.GetObjectInput) (*s3.GetObjectOutput, *stallWatch, error) {
	var stall *stallWatch
	if s.readStall > 0 {
		ctx, stall = watchStall(ctx, s.readStall)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		return nil, nil, stall.explain(err)
	}
	if stall != nil {
		stall.timer.Stop()
	}
	return out, stall, nil
}

// stallWatch cancels a Get's request when its response, or a Read of its
// body, has waited its time for a byte: the request's connection is
// closed, and the read blocked on it returns.
type stallWatch struct {
	after  time.Duration
	timer  *time.Timer
	cancel context.CancelCauseFunc
	ctx    context.Context
}

// stallRetryer is the SDK's retryer (AWS_RETRY_MODE, AWS_MAX_ATTEMPTS
// as configured), except that a request whose response headers did not
// come within ReadStall (http.Transport.ResponseHeaderTimeout) is not
// tried again.
type stallRetryer struct{ aws.RetryerV2 }

func (r stallRetryer) IsErrorRetryable(err error) bool {
	if headerTimeout(err) {
		return false
	}
	return r.RetryerV2.IsErrorRetryable(err)
}

// headerTimeout reports whether err is a response's headers not coming
// within ReadStall: the transport's timeout, or the Get's own watch.
func headerTimeout(err error) bool {
	return err != nil && strings.Contains(err.Error(), "timeout awaiting response headers")
}

// errReadStall is the cause of a Get ended by its stallWatch.
var errReadStall = errors.New("stalled")

func watchStall(ctx context.Context, after time.Duration) (context.Context, *stallWatch) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &stallWatch{after: after, cancel: cancel, ctx: ctx}
	w.timer = time.AfterFunc(after, func() {
		cancel(fmt.Errorf("%w: no data for %s", errReadStall, after))
	})
	return ctx, w
}

// stop ends the watch and releases its context; nil is a no-op.
func (w *stallWatch) stop() {
	if w == nil {
		return
	}
	w.timer.Stop()
	w.cancel(nil)
}

// explain stops the watch and returns err, naming the stall when the
// watch is what ended the request.
func (w *stallWatch) explain(err error) error {
	if w == nil {
		return err
	}
	w.stop()
	return w.named(err)
}

// named returns err, with the stall named when the watch ended the
// request and err does not say so already.
func (w *stallWatch) named(err error) error {
	if cause := context.Cause(w.ctx); errors.Is(cause, errReadStall) && !errors.Is(err, errReadStall) {
		return fmt.Errorf("%w (%v)", cause, err)
	}
	if headerTimeout(err) && !errors.Is(err, errReadStall) {
		// The transport's own bound, ReadStall too, ended it a moment
		// before the watch would have: the same stall.
		return fmt.Errorf("%w: no data for %s (%v)", errReadStall, w.after, err)
	}
	return err
}

const (
	// resumeAttempts is how many requests in a row a Get's body makes to
	// resume a broken read before it gives up, when none of them
	// delivered a byte. One that did starts the count again.
	resumeAttempts = 3
	// resumeBackoff is the pause before the first of those requests,
	// doubled before each next one: short, because a reset or a proxy's
	// idle timeout is over by the time it is noticed, and the SDK backs
	// off on its own from errors a server answers (503 SlowDown).
	resumeBackoff = 200 * time.Millisecond
)

// body is a Get's response body. When a Read of it fails with anything but
// io.EOF while the caller's context is live, it closes the response and
// asks for the rest of the same object: GetObject with Range "bytes=off-"
// and If-Match the first response's ETag, so that a key overwritten
// meanwhile fails the read (412) instead of splicing two objects into one
// stream (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html,
// If-Match and Range). A stall is such a failure: a connection dropped without a reset
// looks exactly like it. Without an ETag there is nothing to pin the object
// by, and a broken read fails as it always did.
//
// Read and Close may be called from different goroutines (Close ends a
// blocked Read); Read from one at a time.
type body struct {
	s      *Store
	ctx    context.Context // the caller's: once it is done nothing resumes
	reqCtx context.Context // ctx, also ended by Close
	cancel context.CancelFunc
	key    string // object key, with the store's prefix
	loc    string
	etag   string // of the first response
	size   int64  // of the object, -1 if the first response did not say

	off     int64     // bytes handed to the caller
	tries   int       // resume requests since the last byte arrived
	brokeAt time.Time // when the first of them was due
	broken  error     // why the current response cannot be read on; nil if it can
	err     error     // what every Read returns from now on

	mu     sync.Mutex // guards what Close touches
	rc     io.ReadCloser
	stall  *stallWatch // rc's watch; nil without ReadStall
	closed bool
}

func (b *body) Read(p []byte) (int, error) {
	// The caller gave up: say so now, rather than hand over bytes the
	// transport still holds (or EOF) until it notices the cancellation.
	if err := b.ctx.Err(); err != nil && b.err == nil {
		b.err = fmt.Errorf("s3: get %s: %w", b.loc, err)
	}
	for b.err == nil {
		if b.broken != nil {
			b.resume()
			continue
		}
		n, err := b.read(p)
		b.off += int64(n)
		if n > 0 {
			b.tries = 0
		}
		switch {
		case err == nil || err == io.EOF:
			return n, err
		case b.resumable():
			b.broken = err
		default:
			b.err = fmt.Errorf("s3: get %s: %w", b.loc, err)
		}
		if n > 0 {
			// Hand over what arrived; the next Read resumes.
			return n, b.err
		}
	}
	return 0, b.err
}

// read reads the current response, running its stall clock for as long
// as the Read waits.
func (b *body) read(p []byte) (int, error) {
	b.mu.Lock()
	rc, stall := b.rc, b.stall
	b.mu.Unlock()
	if stall == nil {
		return rc.Read(p)
	}
	stall.timer.Reset(stall.after)
	n, err := rc.Read(p)
	stall.timer.Stop()
	if err != nil && err != io.EOF {
		err = stall.named(err)
	}
	return n, err
}

// resumable reports whether a failed read may be resumed: the object has
// an ETag to pin it by, and neither the caller (its own context, not the
// stall watch's) nor Close has ended the read.
func (b *body) resumable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.etag != "" && b.ctx.Err() == nil && !b.closed
}

// resume replaces the broken response with one that starts at b.off. It
// clears b.broken when it got one, sets it to the new failure when that
// request failed in a way worth another try, and sets b.err when the read
// is over.
func (b *body) resume() {
	cause := b.broken
	b.drop()
	switch {
	case !b.resumable():
		b.err = fmt.Errorf("s3: get %s: %w", b.loc, cause)
		return
	case b.size >= 0 && b.off >= b.size:
		// Every byte arrived; only the end of the response was lost.
		b.err = io.EOF
		return
	case b.tries == resumeAttempts:
		b.err = fmt.Errorf("s3: get %s: gave up at %s after %d attempts to resume: %w",
			b.loc, b.at(), resumeAttempts, cause)
		return
	case b.tries == 0:
		b.brokeAt = time.Now()
	case b.s.readStall > 0 && time.Since(b.brokeAt) >= b.s.readStall:
		// Each request may wait ReadStall for its answer: without this
		// bound a dead endpoint would fail a read only after four times
		// that (two hours at the default).
		b.err = fmt.Errorf("s3: get %s: gave up at %s: resuming got no answer within %s: %w",
			b.loc, b.at(), b.s.readStall, cause)
		return
	}
	pause := time.NewTimer(resumeBackoff << b.tries)
	b.tries++
	select {
	case <-pause.C:
	case <-b.reqCtx.Done():
		pause.Stop()
		b.err = fmt.Errorf("s3: get %s: %w (resuming at %s after: %v)", b.loc, b.reqCtx.Err(), b.at(), cause)
		return
	}

	out, stall, err := b.s.getObject(b.reqCtx, &s3.GetObjectInput{
		Bucket:  aws.String(b.s.bucket),
		Key:     aws.String(b.key),
		Range:   aws.String(fmt.Sprintf("bytes=%d-", b.off)),
		IfMatch: aws.String(b.etag),
	})
	if err != nil {
		switch {
		case isNotFound(err):
			// Not "changed": the backup is gone (a delete or prune beside
			// this read), and a caller asks storage.ErrNotFound whether
			// it is.
			b.err = fmt.Errorf("s3: get %s: object deleted while being read, at %s: %w (%w)", b.loc, b.at(), storage.ErrNotFound, err)
		case isPreconditionFailed(err):
			b.err = b.changed(err)
		case !b.resumable():
			b.err = fmt.Errorf("s3: get %s: %w", b.loc, err)
		default:
			b.broken = err
		}
		return
	}
	if err := b.check(out); err != nil {
		out.Body.Close()
		stall.stop()
		b.err = err
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		out.Body.Close()
		stall.stop()
		b.broken = errors.New("closed")
		return
	}
	b.rc, b.stall, b.broken = out.Body, stall, nil
}

// check makes sure a resumed response carries the rest of the object the
// read began on.
//
// A server that ignores Range answers 200 with the whole object. Reading
// and discarding the first off bytes would be correct, but it re-downloads
// (and, on AWS, pays egress for) everything read so far on every break, and
// a link that breaks every N bytes would then never get past N; S3 and the
// compatible servers we know honour Range, so such an answer is a broken
// middlebox the operator should hear about: fail, naming it.
func (b *body) check(out *s3.GetObjectOutput) error {
	cr := aws.ToString(out.ContentRange)
	start, total, ok := parseContentRange(cr)
	if cr == "" {
		return fmt.Errorf("s3: get %s: resuming at %s: the server ignored Range and sent the whole object", b.loc, b.at())
	}
	if !ok || start != b.off {
		return fmt.Errorf("s3: get %s: resuming at %s: the server sent Content-Range %q", b.loc, b.at(), cr)
	}
	// If-Match already rules out another object; a server that ignores it
	// is caught here.
	if etag := aws.ToString(out.ETag); (etag != "" && etag != b.etag) || (total >= 0 && b.size >= 0 && total != b.size) {
		return b.changed(fmt.Errorf("ETag %s, %d bytes; the read began on ETag %s, %d bytes", etag, total, b.etag, b.size))
	}
	return nil
}

// changed is the error of a read whose object was replaced since it
// began.
func (b *body) changed(err error) error {
	return fmt.Errorf("s3: get %s: object changed while being read, at %s: %w", b.loc, b.at(), err)
}

// at names the read's position: "byte 1048576 of 4194304".
func (b *body) at() string {
	if b.size < 0 {
		return fmt.Sprintf("byte %d", b.off)
	}
	return fmt.Sprintf("byte %d of %d", b.off, b.size)
}

// drop closes the current response and stops its watch.
func (b *body) drop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stall.stop()
	b.stall = nil
	if b.rc != nil {
		b.rc.Close()
		b.rc = nil
	}
}

func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.cancel()
	b.stall.stop()
	if b.rc == nil {
		return nil
	}
	return b.rc.Close()
}

// parseContentRange reads "bytes START-END/TOTAL"; total is -1 for "*".
func parseContentRange(cr string) (start, total int64, ok bool) {
	rng, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, 0, false
	}
	rng, size, ok := strings.Cut(rng, "/")
	if !ok {
		return 0, 0, false
	}
	first, _, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	total = -1
	if size != "*" {
		if total, err = strconv.ParseInt(size, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

// maxEmptyPages bounds the truncated pages with no keys List accepts in a
// row.
const maxEmptyPages = 1000

// List returns every object under the store's prefix whose key starts with
// prefix, with keys relative to the store's prefix, in key order.
//
// It pages by hand rather than with the SDK's paginator, which trusts the
// server: on IsTruncated without a NextContinuationToken it stops as if
// the listing were complete, and on a token it got before (or a server
// that ignores the token) it loops for ever. Ceph RGW and Huawei OBS have
// sent the first (https://github.com/taylorfinnell/awscr-s3/issues/71,
// https://github.com/minio/minio-go/pull/1704). A listing cut short is
// worse than none: cut between a backup's data and its manifest, it shows
// prune an orphan to delete. So any of these fails List.
func (s *Store) List(ctx context.Context, prefix string) ([]storage.Object, error) {
	root := s.root()
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(root + prefix),
	}
	var objects []storage.Object
	seen := map[string]bool{}   // full keys listed so far
	tokens := map[string]bool{} // continuation tokens sent so far
	empty := 0                  // truncated pages in a row that listed nothing
	for {
		page, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("s3: list %s: %w", s.Location(prefix), s.explain(err))
		}
		fresh := 0
		for _, o := range page.Contents {
			full := aws.ToString(o.Key)
			if seen[full] {
				continue
			}
			seen[full] = true
			fresh++
			key, ok := strings.CutPrefix(full, root)
			if !ok || key == "" {
				continue
			}
			objects = append(objects, storage.Object{
				Key:      key,
				Size:     aws.ToInt64(o.Size),
				Modified: aws.ToTime(o.LastModified),
			})
		}
		if !aws.ToBool(page.IsTruncated) {
			break
		}
		next := aws.ToString(page.NextContinuationToken)
		var broken string
		switch {
		case next == "":
			broken = "it said more keys follow (IsTruncated) but sent no continuation token"
		case tokens[next]:
			broken = "it sent a continuation token it had sent before"
		case fresh == 0 && len(page.Contents) > 0:
			broken = "it listed the same keys again for a continuation token"
		case len(page.Contents) == 0:
			// S3 may send an empty page now and then; a server that
			// sends nothing but, each with a new token, never ends.
			if empty++; empty >= maxEmptyPages {
				broken = fmt.Sprintf("it sent %d pages in a row with no keys, each saying more follow", empty)
			}
		default:
			empty = 0
		}
		if broken != "" {
			return nil, fmt.Errorf("s3: list %s: the server's listing is broken after %d keys: %s; a partial listing would let prune delete backups it did not see whole", s.Location(prefix), len(seen), broken)
		}
		tokens[next] = true
		in.ContinuationToken = aws.String(next)
	}
	// S3 lists in UTF-8 byte order already; sort anyway so the contract
	// holds on servers that do not.
	slices.SortFunc(objects, func(a, b storage.Object) int { return strings.Compare(a.Key, b.Key) })
	return objects, nil
}

// Delete removes key. S3's DeleteObject succeeds on a missing key, so a
// HeadObject first turns that case into storage.ErrNotFound.
func (s *Store) Delete(ctx context.Context, key string) error {
	loc := s.Location(key)
	if err := validKey(key); err != nil {
		return fmt.Errorf("s3: delete %s: %w", loc, err)
	}
	_, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.objectKey(key)),
	})
	if isNotFound(err) {
		return fmt.Errorf("s3: delete %s: %w", loc, storage.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("s3: delete %s: %w", loc, s.explain(err))
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.objectKey(key)),
	})
	if err != nil {
		return fmt.Errorf("s3: delete %s: %w", loc, s.explain(err))
	}
	return nil
}

// PresignGet returns a URL that fetches key with a plain GET until expires
// has passed. It does not check that key exists.
func (s *Store) PresignGet(ctx context.Context, key string, expires time.Duration) (string, error) {
	loc := s.Location(key)
	if err := validKey(key); err != nil {
		return "", fmt.Errorf("s3: presign %s: %w", loc, err)
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.objectKey(key)),
	}, s3.WithPresignExpires(expires))
	if err != nil {
		return "", fmt.Errorf("s3: presign %s: %w", loc, err)
	}
	return req.URL, nil
}

// PartSizeFor returns the part size for a stream expected to be about
// expected bytes: the configured size (at least 5 MiB), raised so that
// expected plus 25% headroom fits in 10,000 parts, rounded up to a MiB and
// capped at S3's 5 GiB part limit. expected <= 0 means unknown.
func PartSizeFor(expected, configured int64) int64 {
	size := max(configured, MinPartSize)
	if expected > 0 {
		// expected + expected/4 without overflowing for absurd hints.
		target := expected
		if target <= (1<<63-1)-target/4 {
			target += target / 4
		} else {
			target = 1<<63 - 1
		}
		need := target / MaxParts
		if target%MaxParts != 0 {
			need++
		}
		size = max(size, need)
	}
	if rem := size % MiB; rem != 0 {
		size += MiB - rem
	}
	return min(size, MaxPartSize)
}

// root is the store's prefix as the start of an object key: "" or "prefix/".
func (s *Store) root() string {
	if s.prefix == "" {
		return ""
	}
	return s.prefix + "/"
}

// objectKey is key under the store's prefix.
func (s *Store) objectKey(key string) string { return s.root() + key }

func validKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	if strings.HasPrefix(key, "/") {
		return errors.New("key must be relative")
	}
	return nil
}

// isNotFound reports whether err says the key (or upload) does not exist:
// NoSuchKey from GetObject, NotFound from HeadObject, or any other 404 except
// NoSuchBucket and VersityGW's XAdminUserNotFound (an unknown access key),
// configuration errors the operator must see. (A HEAD response has no
// body, so HeadObject on a missing bucket, or with a key VersityGW does not
// know, still reads as NotFound; a List or Get before it says what is
// wrong.)
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "NoSuchBucket" || api.ErrorCode() == "XAdminUserNotFound") {
		return false
	}
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// isPreconditionFailed reports whether err is S3's answer to an If-Match
// that no longer holds: the object was replaced.
func isPreconditionFailed(err error) bool {
	return answered(err, "PreconditionFailed", http.StatusPreconditionFailed)
}

// countingReader counts the bytes handed to the uploader and stops the
// stream once ctx is done, so a cancelled Put fails even while the uploader
// is busy reading rather than sending.
type countingReader struct {
	ctx context.Context
	r   io.Reader
	n   int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
