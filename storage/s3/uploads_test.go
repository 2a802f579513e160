package s3_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// startUpload opens a multipart upload of one 5 MiB part and leaves it
// unfinished, as a capture killed mid-upload does.
func startUpload(t *testing.T, srv testenv.S3Server, key string) string {
	t.Helper()
	c := srv.Client()
	up, err := c.CreateMultipartUpload(t.Context(), &awss3.CreateMultipartUploadInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("CreateMultipartUpload %s: %v", key, err)
	}
	_, err = c.UploadPart(t.Context(), &awss3.UploadPartInput{
		Bucket: aws.String(srv.Bucket), Key: aws.String(key), UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(make([]byte, 5<<20)),
	})
	if err != nil {
		t.Fatalf("UploadPart %s: %v", key, err)
	}
	return aws.ToString(up.UploadId)
}

func openUploads(t *testing.T, srv testenv.S3Server) []string {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: aws.String(srv.Bucket)})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	slices.Sort(keys)
	return keys
}

// TestPruneAbortsStaleUploads: an upload a killed capture left open is
// aborted by prune once past the grace, and only backup-shaped keys under
// the store's prefix are touched.
func TestPruneAbortsStaleUploads(t *testing.T) {
	srv := testenv.S3(t)
	st := newStore(t, srv, "backups")
	id := storage.NewID(time.Now().Add(-3 * time.Hour))
	ours := storage.DataKey(id)
	startUpload(t, srv, "backups/"+ours)
	startUpload(t, srv, "backups/"+ours) // a retry under the same key
	foreign := []string{"backups/notes/upload.bin", "elsewhere/" + ours}
	for _, k := range foreign {
		startUpload(t, srv, k)
	}

	tmps, err := st.Temporaries(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(tmps) != 1 || tmps[0].Key != ours || time.Since(tmps[0].Modified) > time.Hour {
		t.Fatalf("Temporaries = %+v, want only %s, started just now", tmps, ours)
	}

	cat := storage.Catalog{Store: st}
	// Within the grace: the upload may belong to a capture still running.
	res, err := storage.Prune(t.Context(), cat, storage.PruneOptions{Now: time.Now(), Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 0 {
		t.Fatalf("prune within the grace removed %+v", res.Removed)
	}
	if got := openUploads(t, srv); len(got) != 4 {
		t.Fatalf("uploads after prune within the grace: %q", got)
	}

	res, err = storage.Prune(t.Context(), cat, storage.PruneOptions{Now: time.Now().Add(2 * time.Hour), Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || res.Removed[0].Key != ours || res.Removed[0].Reason != storage.PruneTemporary {
		t.Fatalf("prune past the grace removed %+v, want the upload of %s", res.Removed, ours)
	}
	if got := openUploads(t, srv); !slices.Equal(got, []string{"backups/notes/upload.bin", "elsewhere/" + ours}) {
		t.Fatalf("uploads left: %q, want only the foreign ones", got)
	}
	// Nothing left to abort.
	if err := st.RemoveTemporary(t.Context(), ours); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RemoveTemporary of an aborted upload: %v, want ErrNotFound", err)
	}
	for _, k := range []string{"notes/upload.bin", "", id, id + "/other.dump.zst"} {
		if err := st.RemoveTemporary(t.Context(), k); err == nil || !strings.Contains(err.Error(), "not a backup's key") {
			t.Errorf("RemoveTemporary(%q) = %v, want a refusal", k, err)
		}
	}
}
