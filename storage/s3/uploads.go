package s3

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/pgbackups/pgbackups/storage"
)

// Unfinished multipart uploads are the S3 store's temporary files. Put
// aborts its upload when it fails, but a process killed mid-upload (SIGKILL,
// a second signal, a crash) leaves the upload open: invisible to List,
// billed by the bucket, and kept until a lifecycle rule
// (AbortIncompleteMultipartUpload) or someone aborts it. Prune does, through
// these two methods, once the upload has been idle longer than the grace.
//
// Idle, not old: a capture that streams for longer than the grace (a big
// database, a grace of an hour) has its upload open all that time, and a
// prune that runs without the backup lock (`pgbackups prune` on a host
// that cannot reach the database) must not abort it. S3 lists an upload
// with the time it was initiated only; its parts carry their own
// LastModified, which ListParts returns. So an upload is reported with
// its newest part's time, as the file store reports a temporary file's
// mtime.

// idleCheckAfter is the age past which Temporaries asks ListParts for an
// upload's last activity. Prune is never given a grace under an hour
// (PGBACKUPS_ORPHAN_GRACE's floor), so a younger upload is within it
// whatever its parts say: a pass costs one request per upload past the
// hour, of which there are few (a capture streaming for that long, or what
// a crash left, removed once idle past the grace).
const idleCheckAfter = time.Hour

// Temporaries lists the unfinished multipart uploads under the store's
// prefix whose key is a backup's (id/id.suffix: other tools' uploads in a
// shared prefix are not ours to abort), each with its last activity as
// Modified: when it was initiated or, for an upload started over
// idleCheckAfter ago, when its newest part was uploaded. A key with several
// uploads is listed once, with the latest activity of any, so that prune's
// grace protects the key while any upload under it may still be running.
//
// When ListParts fails for an upload, its key is left out (nothing shows
// it idle) and the error is returned with the keys that are listed.
func (s *Store) Temporaries(ctx context.Context) ([]storage.Object, error) {
	root := s.root()
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(root)}
	uploads := map[string][]types.MultipartUpload{}
	for {
		page, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			if isNotImplemented(err) {
				// s3proxy, lakeFS and other gateways lack the call. Say
				// what it costs, and wrap errors.ErrUnsupported so a
				// caller can report it as a note rather than a failure.
				return nil, fmt.Errorf("s3: list multipart uploads under %s: %w: %w; uploads a killed capture left cannot be found and aborted here: expire them on the server (an AbortIncompleteMultipartUpload lifecycle rule, or its own expiry)",
					s.Location(""), errors.ErrUnsupported, err)
			}
			return nil, fmt.Errorf("s3: list multipart uploads under %s: %w", s.Location(""), s.explain(err))
		}
		for _, u := range page.Uploads {
			key, ok := strings.CutPrefix(aws.ToString(u.Key), root)
			if !ok || !backupKey(key) {
				continue
			}
			uploads[key] = append(uploads[key], u)
		}
		if !nextUploadsPage(in, page) {
			break
		}
	}
	checkBefore := time.Now().Add(-idleCheckAfter)
	out := make([]storage.Object, 0, len(uploads))
	var errs []error
	for key, ups := range uploads {
		var latest time.Time
		var size int64 // of the parts, where they were listed
		for _, u := range ups {
			latest = later(latest, aws.ToTime(u.Initiated))
		}
		if latest.Before(checkBefore) {
			// Every upload of the key is old enough that its parts
			// decide (they are few: one, unless a retry reused the key).
			var gone int
			var err error
			for _, u := range ups {
				var last time.Time
				var n int64
				var ok bool
				last, n, ok, err = s.lastPart(ctx, u)
				size += n
				if err != nil {
					break
				}
				if !ok {
					gone++
				}
				latest = later(latest, last)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("s3: last activity of the unfinished upload of %s, left alone: %w", s.Location(key), err))
				continue
			}
			if gone == len(ups) {
				continue // completed or aborted since the listing
			}
		}
		out = append(out, storage.Object{Key: key, Modified: latest, Size: size})
	}
	slices.SortFunc(out, func(a, b storage.Object) int { return strings.Compare(a.Key, b.Key) })
	if i := slices.IndexFunc(errs, func(e error) bool { return !errors.Is(e, errors.ErrUnsupported) }); i >= 0 && len(errs) > 1 {
		// A server without ListParts fails every key alike, a note for
		// prune; joined with another error (access denied, the network),
		// errors.Is would make that other error a note too.
		errs = slices.DeleteFunc(errs, func(e error) bool { return errors.Is(e, errors.ErrUnsupported) })
	}
	return out, errors.Join(errs...)
}

// lastPart returns the newest LastModified among upload u's parts (zero
// when it has none yet) and their size, what aborting it frees, and false
// when the upload is gone: completed or aborted since it was listed.
func (s *Store) lastPart(ctx context.Context, u types.MultipartUpload) (time.Time, int64, bool, error) {
	in := &s3.ListPartsInput{Bucket: aws.String(s.bucket), Key: u.Key, UploadId: u.UploadId}
	var last time.Time
	var size int64
	for {
		page, err := s.client.ListParts(ctx, in)
		var nsu *types.NoSuchUpload
		switch {
		case errors.As(err, &nsu) || isNotFound(err):
			return time.Time{}, 0, false, nil
		case isNotImplemented(err):
			return time.Time{}, 0, false, fmt.Errorf("%w: %w; expire unfinished uploads on the server (an AbortIncompleteMultipartUpload lifecycle rule)", errors.ErrUnsupported, err)
		case isAccessDenied(err):
			return time.Time{}, 0, false, fmt.Errorf("%w; prune needs s3:ListMultipartUploadParts to tell a running capture's upload from one a crash left", err)
		case err != nil:
			return time.Time{}, 0, false, s.explain(err)
		}
		for _, p := range page.Parts {
			last = later(last, aws.ToTime(p.LastModified))
			size += aws.ToInt64(p.Size)
		}
		// A server that says more parts follow but gives no new marker
		// would have the loop spin for ever; its listing ends there.
		next := aws.ToString(page.NextPartNumberMarker)
		if !aws.ToBool(page.IsTruncated) || next == "" || next == aws.ToString(in.PartNumberMarker) {
			return last, size, true, nil
		}
		in.PartNumberMarker = aws.String(next)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// RemoveTemporary aborts every unfinished multipart upload under key, which
// must be a backup's key. Aborting never touches a completed object.
func (s *Store) RemoveTemporary(ctx context.Context, key string) error {
	loc := s.Location(key)
	if !backupKey(key) {
		return fmt.Errorf("s3: %s is not a backup's key", loc)
	}
	objKey := s.objectKey(key)
	ids, err := s.uploadIDs(ctx, objKey)
	if err != nil {
		return fmt.Errorf("s3: list multipart uploads of %s: %w", loc, s.explain(err))
	}
	if len(ids) == 0 {
		return fmt.Errorf("s3: no unfinished upload of %s: %w", loc, storage.ErrNotFound)
	}
	if err := s.abortUploads(ctx, objKey, ids); err != nil {
		return fmt.Errorf("s3: abort %s: %w", loc, s.explain(err))
	}
	return nil
}

// uploadIDs lists the unfinished multipart uploads of exactly objKey (a
// full object key, prefix included).
func (s *Store) uploadIDs(ctx context.Context, objKey string) ([]string, error) {
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(objKey)}
	var ids []string
	for {
		page, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, err
		}
		for _, u := range page.Uploads {
			if aws.ToString(u.Key) == objKey && u.UploadId != nil {
				ids = append(ids, *u.UploadId)
			}
		}
		if !nextUploadsPage(in, page) {
			return ids, nil
		}
	}
}

// abortUploads aborts the uploads ids of objKey. An upload already gone
// (NoSuchUpload: someone else aborted it first) is not an error.
func (s *Store) abortUploads(ctx context.Context, objKey string, ids []string) error {
	var errs []error
	for _, id := range ids {
		_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket:   aws.String(s.bucket),
			Key:      aws.String(objKey),
			UploadId: aws.String(id),
		})
		var nsu *types.NoSuchUpload
		if err != nil && !errors.As(err, &nsu) && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("upload %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// nextUploadsPage moves in to the page after page and reports whether
// there is one. A server that says the listing is truncated but gives no
// new marker would have the loop spin forever; its listing ends there.
func nextUploadsPage(in *s3.ListMultipartUploadsInput, page *s3.ListMultipartUploadsOutput) bool {
	if !aws.ToBool(page.IsTruncated) {
		return false
	}
	key, id := aws.ToString(page.NextKeyMarker), aws.ToString(page.NextUploadIdMarker)
	if key == "" || key == aws.ToString(in.KeyMarker) && id == aws.ToString(in.UploadIdMarker) {
		return false
	}
	in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	return true
}

// backupKey reports whether key has a backup's layout: id/id followed by a
// suffix, for a valid id.
func backupKey(key string) bool {
	id, name, ok := strings.Cut(key, "/")
	return ok && storage.ValidID(id) && strings.HasPrefix(name, id+".") && !strings.Contains(name, "/")
}
