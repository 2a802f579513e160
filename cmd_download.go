package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"
	"golang.org/x/term"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/storage"
)

var downloadCommand = command{
	name:    "download",
	args:    "[ID|latest] [-o FILE|DIR|-]",
	summary: "write a backup as a pg_dump archive stock pg_restore reads, checksums verified",
	run: func(m *Main, ctx context.Context, args []string) error {
		fs := m.flags()
		out := fs.String("o", "", "the `FILE` to write (default ID.dump in the current directory; given a directory, ID.dump in it). It is written next to FILE under a hidden temporary name and renamed into place only once both sha256s match, replacing a file already there; a mismatch leaves FILE as it was. - streams to stdout as it is checked, so a mismatch is found after the bytes went out: exit status 1 then says to discard them (use set -o pipefail)")
		pos, err := m.parseFlags(fs, args, 1)
		if err != nil {
			return err
		}
		if *out == "" && flagSet(fs, "o") {
			return usagef("-o needs a file name, a directory, or - for stdout")
		}
		if *out == "-" {
			if f, ok := m.Stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				return usagef("refusing to write a binary archive to a terminal: redirect stdout or use -o FILE")
			}
		} else if *out != "" {
			if err := checkOutput(*out); err != nil {
				return err
			}
		}
		if err := m.setup(ctx); err != nil {
			return err
		}
		man, err := m.resolve(ctx, pos)
		if err != nil {
			return err
		}
		ids, err := m.identities(man)
		if err != nil {
			return err
		}
		if *out == "-" {
			// What reached stdout cannot be taken back: on a mismatch the
			// error says so and the exit status is non-zero.
			if n, err := dump.CopyBackup(ctx, m.store, man, ids, m.Stdout); err != nil {
				if n == 0 {
					return err
				}
				return fmt.Errorf("%w (the bytes already written to stdout must be discarded)", err)
			}
			return nil
		}
		path := *out
		if path == "" {
			path = man.ID + ".dump"
		} else if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			path = filepath.Join(path, man.ID+".dump")
		}
		n, err := downloadFile(ctx, m.store, man, ids, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Stderr, "backup %s of %s: wrote %s to %s, sha256 verified\nrestore it into an empty database with: pg_restore --exit-on-error --dbname=\"$TARGET_DATABASE_URL\" %s\n(add --no-owner --no-acl where the backup's roles do not exist, such as another environment)\n",
			man.ID, man.Database, config.HumanBytes(n), path, quote(path))
		return nil
	},
}

// checkOutput refuses an -o that cannot work before anything is read from
// storage: a directory that does not exist, or something other than a
// regular file or a directory (renaming over /dev/null would replace the
// device with the archive).
func checkOutput(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil && !fi.Mode().IsRegular():
		return usagef("-o %s is not a regular file or a directory; to send the archive there use -o - > %s", path, path)
	case err == nil:
		return nil // replaced once the download is verified
	case strings.HasSuffix(path, string(filepath.Separator)):
		return usagef("-o %s: no such directory", path)
	}
	dir := filepath.Dir(path)
	switch di, err := os.Stat(dir); {
	case err != nil && errors.Is(err, fs.ErrNotExist):
		return usagef("-o %s: directory %s does not exist", path, dir)
	case err == nil && !di.IsDir():
		return usagef("-o %s: %s is not a directory", path, dir)
	}
	return nil
}

// downloadFile writes the archive to a temporary file next to path and
// renames it into place only once its checksums matched: path is either
// absent or a verified archive, never a partial one.
func downloadFile(ctx context.Context, st storage.Store, man storage.Manifest, ids []age.Identity, path string) (int64, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	// 0600 (CreateTemp's mode): the archive holds the whole database.
	f, err := os.CreateTemp(dir, "."+base+".partial-*")
	if err != nil {
		// The temporary name means nothing to the user: name the directory.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return 0, fmt.Errorf("download %s: cannot create a file in %s to write %s: %w", man.ID, dir, path, err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	n, err := dump.CopyBackup(ctx, st, man, ids, f)
	if err != nil {
		return n, fmt.Errorf("%w (nothing was written to %s)", err, path)
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("download %s: %w", man.ID, err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("download %s: %w", man.ID, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			err = le.Err
		}
		return n, fmt.Errorf("download %s: put the verified archive at %s: %w", man.ID, path, err)
	}
	done = true
	return n, nil
}

var urlCommand = command{
	name:    "url",
	args:    "[ID|latest] [--expires 1h]",
	summary: "print a time-limited URL of a backup's stored object (S3 only)",
	run: func(m *Main, ctx context.Context, args []string) error {
		fs := m.flags()
		expires := fs.Duration("expires", time.Hour, "how long the URL works (at most 168h, S3's limit)")
		pos, err := m.parseFlags(fs, args, 1)
		if err != nil {
			return err
		}
		// SigV4 pre-signed URLs live at most seven days.
		if *expires < time.Second || *expires > 7*24*time.Hour {
			return usagef("--expires %s is outside 1s to 168h", *expires)
		}
		if err := m.setup(ctx); err != nil {
			return err
		}
		man, err := m.resolve(ctx, pos)
		if err != nil {
			return err
		}
		if !man.OK() {
			return fmt.Errorf("backup %s did not complete (status %s): it has no data to hand out", man.ID, man.Status)
		}
		if err := man.CheckData(); err != nil {
			return fmt.Errorf("backup %s: %w", man.ID, err)
		}
		listed := man
		listed.GlobalsKey = "" // a URL hands out the data object only
		if err := m.catalog().Damage(ctx, listed); err != nil {
			return fmt.Errorf("backup %s: %w: no URL handed out", man.ID, err)
		}
		kind, decrypt := "a zstd-compressed", ""
		if man.Encryption != "" {
			// age -d reads the identity file age-keygen wrote, the one
			// PGBACKUPS_AGE_IDENTITY_FILE names.
			kind, decrypt = "an age-encrypted, zstd-compressed", " | age -d -i KEYFILE"
			if m.cfg.AgeIdentityFile != "" {
				decrypt = " | age -d -i \"$PGBACKUPS_AGE_IDENTITY_FILE\""
			}
		}
		signer, ok := m.store.(storage.Signer)
		if !ok {
			return fmt.Errorf("the storage at %s cannot sign URLs (only S3 can); use `pgbackups download %s` instead, or read %s directly: it is %s pg_dump archive",
				m.root(), man.ID, m.location(man.DataKey), kind)
		}
		u, err := signer.PresignGet(ctx, man.DataKey, *expires)
		if err != nil {
			return fmt.Errorf("url %s: %w", man.ID, err)
		}
		// The URL is a bearer credential for the whole database until it
		// expires: it goes to stdout only, never into the hint on stderr,
		// which ends up in terminals' scrollback, CI logs and the journal
		// even when stdout is captured by $(...).
		fmt.Fprintln(m.Stdout, u)
		holding := "anyone holding it can read the whole backup"
		if decrypt != "" {
			holding = "anyone holding it can fetch the encrypted backup"
		}
		fmt.Fprintf(m.Stderr, "URL on stdout, valid until %s: %s. The object is %s pg_dump archive; restore straight from it into an empty database with:\n  curl -fsS \"$URL\"%s | zstd -d | pg_restore --exit-on-error --dbname=\"$TARGET_DATABASE_URL\"\n(add --no-owner --no-acl where the backup's roles do not exist, such as another environment)\n",
			time.Now().Add(*expires).Local().Format("2006-01-02 15:04 MST"), holding, kind, decrypt)
		return nil
	},
}
