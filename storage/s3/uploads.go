package s3

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

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
// these two methods, once the upload is older than the grace. The grace
// counts from the upload's start (S3 lists no last activity), so a capture
// running longer than the grace relies on what already protects it: the
// daemon prunes under the advisory lock that one backup at a time holds,
// and `pgbackups prune` refuses to run while a backup does.

// Temporaries lists the unfinished multipart uploads under the store's
// prefix whose key is a backup's (id/id.suffix: other tools' uploads in a
// shared prefix are not ours to abort). A key with several uploads is
// listed once, with its newest upload's start as Modified, so that prune's
// grace protects the key while any upload under it may still be running.
func (s *Store) Temporaries(ctx context.Context) ([]storage.Object, error) {
	root := s.root()
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(root)}
	newest := map[string]storage.Object{}
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
			if o, seen := newest[key]; !seen || aws.ToTime(u.Initiated).After(o.Modified) {
				newest[key] = storage.Object{Key: key, Modified: aws.ToTime(u.Initiated)}
			}
		}
		if !nextUploadsPage(in, page) {
			break
		}
	}
	out := make([]storage.Object, 0, len(newest))
	for _, o := range newest {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b storage.Object) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
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
