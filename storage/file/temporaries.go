package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/pgbackups/pgbackups/storage"
)

// RemoveTemporary removes one unfinished write that Temporaries listed.
// It refuses any key that does not name a temporary file, so prune cannot
// be talked into removing a backup through it.
func (s *Store) RemoveTemporary(ctx context.Context, key string) error {
	clean := filepath.Clean("/" + key)
	if key == "" || clean != "/"+key || !ownTemporary(key) {
		return fmt.Errorf("file: %q is not a temporary file", key)
	}
	p := filepath.Join(s.Root, filepath.FromSlash(clean))
	if err := removeGently(ctx, p); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file: remove temporary %s: %w", key, storage.ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("file: remove temporary %s: %w", key, err)
	}
	s.removeEmptyParents(p)
	return nil
}

// ownTemporary reports whether key names one of Put's temporaries:
// <id>/.tmp-<id>.<suffix>-<random>, in a backup's folder at the root. Other
// .tmp- files under the root are not this store's to remove (another
// program's, or those of a location nested in this one).
func ownTemporary(key string) bool {
	id, name, ok := strings.Cut(key, "/")
	return ok && storage.ValidID(id) && !strings.Contains(name, "/") && strings.HasPrefix(name, tmpPrefix+id+".")
}
