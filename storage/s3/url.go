package s3

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// ParseURL splits "s3://bucket/some/prefix" into its bucket and prefix. The
// prefix has no leading or trailing slash and may be empty.
func ParseURL(raw string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(raw, "s3://")
	if !ok {
		return "", "", fmt.Errorf("s3: parse url %q: want s3://bucket[/prefix]", raw)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if strings.ContainsAny(bucket, "@:") {
		// Likely key:secret@bucket (the bucket is "key:" when the secret
		// holds a slash): not echoed.
		return "", "", errors.New("s3: parse url (not shown): a bucket name holds no '@' or ':', and credentials do not belong in the URL; set PGBACKUPS_S3_ACCESS_KEY_ID and PGBACKUPS_S3_SECRET_ACCESS_KEY, or use the AWS credential chain")
	}
	if err := validBucket(bucket); err != nil {
		return "", "", fmt.Errorf("s3: parse url %q: %w", raw, err)
	}
	if strings.ContainsAny(prefix, "?#") {
		return "", "", fmt.Errorf("s3: parse url %q: prefix must not contain '?' or '#'", raw)
	}
	prefix = strings.Trim(prefix, "/")
	if strings.Contains(prefix, "//") {
		return "", "", fmt.Errorf("s3: parse url %q: empty path segment in prefix", raw)
	}
	return bucket, prefix, nil
}

// validBucket applies S3's general purpose bucket naming rules:
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
func validBucket(name string) error {
	if name == "" {
		return errors.New("bucket name is empty")
	}
	if len(name) < 3 || len(name) > 63 {
		return fmt.Errorf("bucket %q: name must be 3 to 63 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return fmt.Errorf("bucket %q: name may hold only lowercase letters, digits, dots and hyphens", name)
		}
	}
	if !isAlnum(name[0]) || !isAlnum(name[len(name)-1]) {
		return fmt.Errorf("bucket %q: name must begin and end with a letter or digit", name)
	}
	if strings.Contains(name, "..") {
		return fmt.Errorf("bucket %q: name must not hold two adjacent dots", name)
	}
	if net.ParseIP(name) != nil {
		return fmt.Errorf("bucket %q: name must not be an IP address", name)
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}
