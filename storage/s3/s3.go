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
	"strings"
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
			return body.n, fmt.Errorf("s3: put %s: %w (abort: %v)", loc, err, abortErr)
		}
		return body.n, fmt.Errorf("s3: put %s: %w", loc, err)
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
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	loc := s.Location(key)
	if err := validKey(key); err != nil {
		return nil, fmt.Errorf("s3: get %s: %w", loc, err)
	}
	var stall *stallWatch
	if s.readStall > 0 {
		ctx, stall = watchStall(ctx, s.readStall)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.objectKey(key)),
	})
	if isNotFound(err) {
		stall.stop()
		return nil, fmt.Errorf("s3: get %s: %w", loc, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("s3: get %s: %w", loc, stall.explain(err))
	}
	if stall == nil {
		return out.Body, nil
	}
	// From here the clock runs only while a Read waits: a reader that
	// pauses (pg_restore waiting for a lock on the target, a full pipe
	// downstream) is not S3 stalling.
	stall.timer.Stop()
	return &stallBody{body: out.Body, stall: stall, loc: loc}, nil
}

// stallWatch cancels a Get's context when its response, or a Read of its
// body, has waited its time for a byte: the request's connection is
// closed, and the read blocked on it returns.
type stallWatch struct {
	after  time.Duration
	timer  *time.Timer
	cancel context.CancelCauseFunc
	ctx    context.Context
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
	return err
}

// stallBody is a Get's body under its stallWatch.
type stallBody struct {
	body  io.ReadCloser
	stall *stallWatch
	loc   string
}

func (b *stallBody) Read(p []byte) (int, error) {
	b.stall.timer.Reset(b.stall.after)
	n, err := b.body.Read(p)
	b.stall.timer.Stop()
	if err != nil && err != io.EOF && context.Cause(b.stall.ctx) != nil {
		err = fmt.Errorf("s3: get %s: %w", b.loc, b.stall.named(err))
	}
	return n, err
}

func (b *stallBody) Close() error {
	b.stall.stop()
	return b.body.Close()
}

// List returns every object under the store's prefix whose key starts with
// prefix, with keys relative to the store's prefix, in key order.
func (s *Store) List(ctx context.Context, prefix string) ([]storage.Object, error) {
	root := s.root()
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(root + prefix),
	})
	var objects []storage.Object
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3: list %s: %w", s.Location(prefix), err)
		}
		for _, o := range page.Contents {
			key, ok := strings.CutPrefix(aws.ToString(o.Key), root)
			if !ok || key == "" {
				continue
			}
			objects = append(objects, storage.Object{
				Key:      key,
				Size:     aws.ToInt64(o.Size),
				Modified: aws.ToTime(o.LastModified),
			})
		}
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
		return fmt.Errorf("s3: delete %s: %w", loc, err)
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.objectKey(key)),
	})
	if err != nil {
		return fmt.Errorf("s3: delete %s: %w", loc, err)
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
// NoSuchBucket, which is a configuration error the operator must see. (A
// HEAD response has no body, so HeadObject on a missing bucket still reads
// as NotFound.)
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "NoSuchBucket" {
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
