package s3_test

import (
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/storage/s3"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		raw            string
		bucket, prefix string
		err            string // substring of the error; "" for success
	}{
		{raw: "s3://my-bucket", bucket: "my-bucket"},
		{raw: "s3://my-bucket/", bucket: "my-bucket"},
		{raw: "s3://my.bucket.01/some/prefix", bucket: "my.bucket.01", prefix: "some/prefix"},
		{raw: "s3://abc/some/prefix/", bucket: "abc", prefix: "some/prefix"},
		{raw: "s3://abc//lead", bucket: "abc", prefix: "lead"},
		{raw: "s3://" + strings.Repeat("a", 63) + "/p", bucket: strings.Repeat("a", 63), prefix: "p"},
		{raw: "", err: "want s3://bucket[/prefix]"},
		{raw: "my-bucket/prefix", err: "want s3://bucket[/prefix]"},
		{raw: "S3://my-bucket", err: "want s3://bucket[/prefix]"},
		{raw: "https://my-bucket.s3.amazonaws.com/x", err: "want s3://bucket[/prefix]"},
		{raw: "s3://", err: "bucket name is empty"},
		{raw: "s3:///prefix", err: "bucket name is empty"},
		{raw: "s3://ab", err: "3 to 63 characters"},
		{raw: "s3://" + strings.Repeat("a", 64), err: "3 to 63 characters"},
		{raw: "s3://My-Bucket", err: "lowercase letters, digits, dots and hyphens"},
		{raw: "s3://AKIAKEY:wJalr@my-bucket/p", err: "credentials do not belong in the URL"},
		{raw: "s3://AKIAKEY:/wJalr@my-bucket/p", err: "credentials do not belong in the URL"}, // the bucket is "AKIAKEY:"
		{raw: "s3://my_bucket", err: "lowercase letters, digits, dots and hyphens"},
		{raw: "s3://my bucket", err: "lowercase letters, digits, dots and hyphens"},
		{raw: "s3://-bucket", err: "begin and end with a letter or digit"},
		{raw: "s3://bucket.", err: "begin and end with a letter or digit"},
		{raw: "s3://my..bucket", err: "two adjacent dots"},
		{raw: "s3://192.168.1.1", err: "IP address"},
		{raw: "s3://bkt/a//b", err: "empty path segment"},
		{raw: "s3://bkt/a?versionId=1", err: "'?' or '#'"},
	} {
		bucket, prefix, err := s3.ParseURL(tc.raw)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParseURL(%q): %v", tc.raw, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseURL(%q) error = %v, want it to mention %q", tc.raw, err, tc.err)
		case bucket != tc.bucket || prefix != tc.prefix:
			t.Errorf("ParseURL(%q) = %q, %q, want %q, %q", tc.raw, bucket, prefix, tc.bucket, tc.prefix)
		case err != nil && strings.Contains(err.Error(), "wJalr"):
			t.Errorf("ParseURL(%q) error shows the secret: %v", tc.raw, err)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"s3://bkt", "s3://bkt/a/b/", "s3://a..b/x", "s3://x/?#", "s3:///"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		bucket, prefix, err := s3.ParseURL(raw)
		if err != nil {
			return
		}
		if strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/") {
			t.Fatalf("ParseURL(%q) prefix %q has outer slashes", raw, prefix)
		}
		again := "s3://" + bucket
		if prefix != "" {
			again += "/" + prefix
		}
		b2, p2, err := s3.ParseURL(again)
		if err != nil || b2 != bucket || p2 != prefix {
			t.Fatalf("ParseURL(%q) = %q, %q; reparsing %q = %q, %q, %v", raw, bucket, prefix, again, b2, p2, err)
		}
	})
}

func TestPartSizeFor(t *testing.T) {
	const (
		MiB = 1 << 20
		GiB = 1 << 30
		TiB = 1 << 40
	)
	for _, tc := range []struct {
		expected, configured, want int64
	}{
		{0, 0, 5 * MiB},                  // nothing known: S3's minimum
		{0, 16 * MiB, 16 * MiB},          // unknown size keeps the configured size
		{-1, 16 * MiB, 16 * MiB},         // negative is unknown
		{0, 3 * MiB, 5 * MiB},            // below S3's minimum is raised
		{0, 16*MiB + 1, 17 * MiB},        // rounded up to a MiB
		{1 * GiB, 16 * MiB, 16 * MiB},    // small dump: configured size is plenty
		{100 * GiB, 16 * MiB, 16 * MiB},  // 125 GiB / 10,000 = 12.8 MiB < 16 MiB
		{100 * GiB, 5 * MiB, 13 * MiB},   // 12.8 MiB rounded up
		{1 * TiB, 16 * MiB, 132 * MiB},   // 1.25 TiB / 10,000 = 131.07 MiB
		{5 * TiB, 16 * MiB, 656 * MiB},   // 6.25 TiB / 10,000 = 655.36 MiB
		{50 * TiB, 16 * MiB, 5 * GiB},    // capped at S3's largest part
		{1<<63 - 1, 16 * MiB, 5 * GiB},   // no overflow
		{10000 * 4 * MiB, 0, 5 * MiB},    // 50,000 MiB / 10,000 = exactly 5 MiB
		{10000*4*MiB + 4, 0, 6 * MiB},    // one byte over needs the next MiB
		{80000 * MiB, 6 * MiB, 10 * MiB}, // exactly 10 MiB stays 10 MiB
	} {
		got := s3.PartSizeFor(tc.expected, tc.configured)
		if got != tc.want {
			t.Errorf("PartSizeFor(%d, %d) = %d (%.2f MiB), want %d (%.2f MiB)",
				tc.expected, tc.configured, got, float64(got)/MiB, tc.want, float64(tc.want)/MiB)
		}
		// Whatever it returns, expected+25% must fit in 10,000 parts
		// unless the 5 GiB cap bites.
		if got < 5*GiB && tc.expected > 0 && tc.expected/4*5/got > 10000 {
			t.Errorf("PartSizeFor(%d, %d) = %d: %d parts", tc.expected, tc.configured, got, tc.expected/4*5/got)
		}
	}
}
