package s3_test

import (
	"context"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/s3"
)

// fakeStore opens a Store on an httptest server standing in for an
// S3-compatible server, with static credentials and an explicit region;
// edit changes the options first.
func fakeStore(t *testing.T, h http.Handler, edit ...func(*s3.Options)) *s3.Store {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	opts := s3.Options{
		Bucket:          "bkt",
		Prefix:          "backups",
		Region:          "us-east-1",
		Endpoint:        srv.URL,
		AccessKeyID:     "AKIDEXAMPLE",
		SecretAccessKey: "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
	}
	for _, e := range edit {
		e(&opts)
	}
	st, err := s3.New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

type listContents struct {
	Key          string
	Size         int64
	LastModified string
}

type listResult struct {
	XMLName               xml.Name `xml:"ListBucketResult"`
	Name                  string
	Prefix                string
	KeyCount              int
	MaxKeys               int
	IsTruncated           bool
	ContinuationToken     string `xml:",omitempty"`
	NextContinuationToken string `xml:",omitempty"`
	Contents              []listContents
}

// pagedLister answers ListObjectsV2 with pages of two keys from keys. next
// gives the NextContinuationToken after the page that ends before index
// end, given the token the request carried; start gives the index a
// request's token resumes at. Between them a test makes a server that
// loses or repeats its tokens.
type pagedLister struct {
	keys  []string
	next  func(end int, token string) string
	start func(token string) int
	calls int
}

func (p *pagedLister) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method != http.MethodGet || q.Get("list-type") != "2" {
		http.Error(w, "unexpected request", http.StatusBadRequest)
		return
	}
	p.calls++
	if p.calls > 50 {
		// The client never stops: end the test's wait rather than spin.
		http.Error(w, "too many list requests", http.StatusTeapot)
		return
	}
	token := q.Get("continuation-token")
	i := p.start(token)
	end := min(i+2, len(p.keys))
	res := listResult{Name: "bkt", Prefix: q.Get("prefix"), KeyCount: end - i, MaxKeys: 1000, ContinuationToken: token}
	for _, k := range p.keys[i:end] {
		res.Contents = append(res.Contents, listContents{Key: k, Size: 1, LastModified: "2026-01-01T00:00:00.000Z"})
	}
	if end < len(p.keys) {
		res.IsTruncated = true
		res.NextContinuationToken = p.next(end, token)
	}
	w.Header().Set("Content-Type", "application/xml")
	xml.NewEncoder(w).Encode(res)
}

// backupKeys are one backup's three objects under the prefix "backups",
// manifest last, plus one more object: three pages of two.
func backupKeys() []string {
	id := "20260101-020000-abcd"
	return []string{
		"backups/" + storage.DataKey(id),
		"backups/" + id + "/" + id + ".globals.sql.zst",
		"backups/" + storage.ManifestKey(id),
		"backups/zz-other",
	}
}

func atoi(token string) int {
	i, _ := strconv.Atoi(strings.TrimPrefix(token, "t"))
	return i
}

// TestListPaginates: a server that pages correctly is listed whole.
func TestListPaginates(t *testing.T) {
	keys := backupKeys()
	st := fakeStore(t, &pagedLister{
		keys:  keys,
		next:  func(end int, _ string) string { return "t" + strconv.Itoa(end) },
		start: atoi,
	})
	objs, err := st.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(keys) {
		t.Fatalf("List = %d objects %+v, want %d", len(objs), objs, len(keys))
	}
}

// TestListBrokenPagination: a server that says a listing is truncated
// but loses the way to its next page must fail List, not cut it short
// or loop. A listing cut before a backup's manifest shows the backup's
// data without it: prune would delete the backup as an orphan.
// Ceph RGW and Huawei OBS have sent IsTruncated without a
// NextContinuationToken (https://github.com/taylorfinnell/awscr-s3/issues/71,
// https://github.com/minio/minio-go/pull/1704).
func TestListBrokenPagination(t *testing.T) {
	for name, p := range map[string]*pagedLister{
		// IsTruncated true, no NextContinuationToken: the SDK's
		// paginator stops there, silently.
		"no token": {
			next:  func(int, string) string { return "" },
			start: atoi,
		},
		// The same token again and again: the paginator loops.
		"same token": {
			next:  func(int, string) string { return "t1" },
			start: atoi,
		},
		// Tokens ignored: every answer is the first page, with a new
		// token each time.
		"token ignored": {
			next:  func(end int, token string) string { return "t" + strconv.Itoa(atoi(token)+end) },
			start: func(string) int { return 0 },
		},
	} {
		t.Run(name, func(t *testing.T) {
			p.keys = backupKeys()
			st := fakeStore(t, p)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			objs, err := st.List(ctx, "")
			if err == nil {
				t.Fatalf("List = %d objects %+v, nil error; want an error naming the broken listing", len(objs), objs)
			}
			if !strings.Contains(err.Error(), "s3://bkt/backups/") || !strings.Contains(err.Error(), "continuation") {
				t.Fatalf("List error = %v; want it to name the location and the continuation token", err)
			}
			if p.calls > 10 {
				t.Errorf("List sent %d requests for 4 keys", p.calls)
			}
		})
	}
}

// emptyLister answers every ListObjectsV2 with no keys, truncated, and a
// token never sent before: a server that would have List loop for ever.
type emptyLister struct{ calls int }

func (e *emptyLister) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.calls++
	res := listResult{Name: "bkt", Prefix: r.URL.Query().Get("prefix"), MaxKeys: 1000, IsTruncated: true, NextContinuationToken: "t" + strconv.Itoa(e.calls)}
	w.Header().Set("Content-Type", "application/xml")
	xml.NewEncoder(w).Encode(res)
}

// TestListEndlessEmptyPages: empty truncated pages, each with a new token,
// fail List after maxEmptyPages instead of looping for ever.
func TestListEndlessEmptyPages(t *testing.T) {
	e := &emptyLister{}
	st := fakeStore(t, e)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := st.List(ctx, "")
	if err == nil || !strings.Contains(err.Error(), "pages in a row with no keys") {
		t.Fatalf("List of endless empty pages: %v, want an error naming them", err)
	}
	if e.calls != 1000 { // maxEmptyPages
		t.Errorf("List sent %d requests, want 1000", e.calls)
	}
}
