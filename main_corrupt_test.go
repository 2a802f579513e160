package main

import (
	"bytes"
	bin "encoding/binary"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// What pgbackups does when what is stored is not what capture stored: a
// data object cut short, replaced, gone; a manifest that is not one
// pgbackups wrote; globals missing. Every case works on a copy of one
// store holding two real backups, old and new, so that each can also
// check that the other backup still lists, and that retention
// (PGBACKUPS_KEEP_LAST=1) does not delete it in favour of the broken one.

// corruptFixture is a store with two real backups, copied for each case.
type corruptFixture struct {
	pg       *testenv.Postgres
	src      string
	pristine string
	old, new storage.Manifest
	archive  []byte // new's pg_dump archive
}

func newCorruptFixture(t *testing.T) *corruptFixture {
	t.Helper()
	f := &corruptFixture{pg: testenv.PG(t), pristine: t.TempDir()}
	f.src = f.pg.CreateDB(t)
	f.pg.SeedRich(t, f.src, 20000) // an archive of a few MiB: more than a pipe holds
	var ms []storage.Manifest
	for range 2 {
		r := run(t, f.env(f.pristine), "capture")
		if r.code != 0 {
			t.Fatalf("capture: %s", r.stderr)
		}
		m, err := storage.Catalog{Store: openFileStore(t, f.pristine)}.Manifest(t.Context(), lastLine(r.stdout))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	f.old, f.new = ms[0], ms[1]
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	stored, err := os.ReadFile(filepath.Join(f.pristine, f.new.DataKey))
	if err != nil {
		t.Fatal(err)
	}
	if f.archive, err = dec.DecodeAll(stored, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func openFileStore(t *testing.T, dir string) storage.Store {
	t.Helper()
	st, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// env runs pgbackups on the store in dir, keeping only the newest good
// backup.
func (f *corruptFixture) env(dir string) []string {
	return []string{"PGBACKUPS_DATABASE_URL=" + f.pg.URL(f.src), "PGBACKUPS_PG_BIN_DIR=" + f.pg.BinDir, "PGBACKUPS_STORAGE_URL=" + dir,
		"PGBACKUPS_KEEP_LAST=1", "PGBACKUPS_KEEP_DAILY=0", "PGBACKUPS_KEEP_WEEKLY=0"}
}

// copyStore returns a fresh copy of the two backups to damage.
func (f *corruptFixture) copyStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", f.pristine+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dir
}

// storeWith returns a fresh copy of the store with key's object replaced
// by data, or removed when data is nil.
func (f *corruptFixture) storeWith(t *testing.T, key string, data []byte) string {
	t.Helper()
	dir := f.copyStore(t)
	if data == nil {
		os.Remove(filepath.Join(dir, key))
	} else {
		writeFile(t, filepath.Join(dir, key), data)
	}
	return dir
}

// storeWithArchive returns a fresh copy of the store whose newer backup
// holds archive, compressed, at the size its manifest records: only the
// checksums can tell.
func (f *corruptFixture) storeWithArchive(t *testing.T, archive []byte) string {
	t.Helper()
	obj := zstdCompress(t, archive)
	dir := f.storeWith(t, f.new.DataKey, obj)
	editManifest(t, dir, f.new.ID, func(m map[string]any) { m["stored_bytes"] = len(obj) })
	return dir
}

// editManifest rewrites id's manifest in dir through its JSON fields.
func editManifest(t *testing.T, dir, id string, edit func(map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, storage.ManifestKey(id))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// zstdCompress is a complete, valid zstd stream of b.
func zstdCompress(t *testing.T, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// zstdLayout walks a zstd object's frames: where each block ends, and
// where the first frame's content checksum starts (0 if it has none).
// RFC 8878 section 3.1.1.
func zstdLayout(t *testing.T, b []byte) (blockEnds []int, checksumAt int) {
	t.Helper()
	if len(b) < 6 || bin.LittleEndian.Uint32(b) != 0xFD2FB528 {
		t.Fatalf("not a zstd frame")
	}
	fhd := b[4]
	single := fhd>>5&1 == 1
	pos := 5
	if !single {
		pos++ // window descriptor
	}
	pos += []int{0, 1, 2, 4}[fhd&3] // dictionary id
	fcs := []int{0, 2, 4, 8}[fhd>>6]
	if fhd>>6 == 0 && single {
		fcs = 1
	}
	pos += fcs
	for pos+3 <= len(b) {
		hdr := int(b[pos]) | int(b[pos+1])<<8 | int(b[pos+2])<<16
		pos += 3
		if size := hdr >> 3; hdr>>1&3 == 1 { // RLE: one byte stored
			pos++
		} else {
			pos += size
		}
		blockEnds = append(blockEnds, pos)
		if hdr&1 == 1 { // last block
			break
		}
	}
	if fhd>>2&1 == 1 {
		checksumAt = pos
	}
	return blockEnds, checksumAt
}

// relationsIn counts what a restore would have created in db.
func relationsIn(t *testing.T, pg *testenv.Postgres, db string) string {
	t.Helper()
	return pg.QueryString(t, db, `SELECT count(*)::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`)
}

// TestCorruptDataObject: the data object cut mid-frame, at a block
// boundary, before the frame's checksum, cut to a shorter valid zstd
// stream, replaced by garbage, emptied, or gone. Every command that reads
// it fails naming the object and what was expected; a download leaves
// nothing under the name asked for, nor replaces a file already there;
// a restore fails before touching the target (the listing already shows
// the size is wrong) and says so; list and info show the backup as
// damaged; retention does not count it as the one good backup to keep.
func TestCorruptDataObject(t *testing.T) {
	f := newCorruptFixture(t)
	stored, err := os.ReadFile(filepath.Join(f.pristine, f.new.DataKey))
	if err != nil {
		t.Fatal(err)
	}
	blocks, checksumAt := zstdLayout(t, stored)
	if len(blocks) < 3 || checksumAt == 0 {
		t.Fatalf("want an object of several blocks with a frame checksum: blocks end at %v, checksum at %d", blocks, checksumAt)
	}
	id, key := f.new.ID, f.new.DataKey
	for _, c := range []struct {
		name string
		data []byte // nil: the object is removed
		want string // in list's and info's warning
	}{
		{"cut mid-frame", stored[:len(stored)/2], "is " + strconv.Itoa(len(stored)/2) + " bytes, the manifest says " + strconv.Itoa(len(stored))},
		{"cut at a block boundary", stored[:blocks[1]], "is " + strconv.Itoa(blocks[1]) + " bytes"},
		{"cut before the frame checksum", stored[:checksumAt], "is " + strconv.Itoa(checksumAt) + " bytes"},
		{"a shorter valid zstd stream", zstdCompress(t, f.archive[:len(f.archive)/2]), "bytes, the manifest says " + strconv.Itoa(len(stored))},
		{"garbage", bytes.Repeat([]byte("not zstd "), 1000), "is 9000 bytes"},
		{"zero bytes", []byte{}, "is 0 bytes"},
		{"missing", nil, key + " is missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := f.storeWith(t, key, c.data)
			env := f.env(dir)

			r := run(t, env, "list")
			if r.code != 0 || !strings.Contains(r.stdout, id+"  damaged") || !strings.Contains(r.stdout, f.old.ID+"  completed") ||
				!strings.Contains(r.stderr, "backup "+id+": damaged: its data object "+key) || !strings.Contains(r.stderr, c.want) {
				t.Errorf("list: exit %d, want %s damaged (%q) and %s completed\n%s%s", r.code, id, c.want, f.old.ID, r.stdout, r.stderr)
			}
			// list --json: a script choosing a backup sees the damage.
			r = run(t, env, "list", "--json")
			var rows []struct {
				ID       string   `json:"id"`
				Problems []string `json:"problems"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 2 || rows[0].ID != id ||
				len(rows[0].Problems) != 1 || !strings.Contains(rows[0].Problems[0], c.want) || len(rows[1].Problems) != 0 {
				t.Errorf("list --json: %v, want %s with its problem (%q) and %s without\n%s", err, id, c.want, f.old.ID, r.stdout)
			}
			r = run(t, env, "info", id)
			if r.code != 0 || !strings.Contains(r.stdout, "Problem:") || !strings.Contains(r.stdout, c.want) {
				t.Errorf("info: exit %d, want the damage shown (%q)\n%s%s", r.code, c.want, r.stdout, r.stderr)
			}

			// download -o FILE: a file already there stays as it was.
			out := filepath.Join(t.TempDir(), "app.dump")
			writeFile(t, out, []byte("yesterday's good download"))
			r = run(t, env, "download", id, "-o", out)
			if r.code != exitFailure || !strings.Contains(r.stderr, "backup "+id) || !strings.Contains(r.stderr, "does not match its manifest") {
				t.Errorf("download -o FILE: exit %d\n%s", r.code, r.stderr)
			}
			if b, _ := os.ReadFile(out); string(b) != "yesterday's good download" {
				t.Errorf("download replaced %s with %d bytes of a damaged backup", out, len(b))
			}
			if left, _ := os.ReadDir(filepath.Dir(out)); len(left) != 1 {
				t.Errorf("download left %v behind", left)
			}
			r = run(t, env, "download", id, "-o", "-")
			// What reached stdout must be discarded, and the error says so
			// when anything did.
			if r.code != exitFailure || !strings.Contains(r.stderr, "does not match its manifest") || strings.Contains(r.stderr, "written to stdout must be discarded") != (r.stdout != "") {
				t.Errorf("download -o -: exit %d, %d bytes on stdout\n%s", r.code, len(r.stdout), r.stderr)
			}
			r = run(t, env, "verify", id)
			if r.code != exitFailure || !strings.Contains(r.stderr, "verify "+id) || !strings.Contains(r.stderr, "does not match its manifest") || strings.Contains(r.stdout, "is good") {
				t.Errorf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}

			// restore, streamed and parallel, and latest: refused before
			// the target (or, --with-globals, its cluster) is touched.
			for _, args := range [][]string{{id, "--with-globals"}, {id, "--jobs", "2"}, {"latest"}} {
				target := f.pg.CreateDB(t)
				r = run(t, env, append([]string{"restore", "--to", f.pg.URL(target), "--confirm", target}, args...)...)
				switch {
				case args[0] == "latest" && strings.Contains(r.stderr, "latest: backup "+id+": damaged"):
					// Storage lists it damaged: latest stops at it, naming
					// it and the newest whole backup.
					if r.code != exitFailure || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "the newest backup that is not is ") {
						t.Errorf("restore latest: exit %d, want it to stop at the damaged newest backup\n%s", r.code, r.stderr)
					}
				case r.code != exitFailure || !strings.Contains(r.stderr, "does not match its manifest") || !strings.Contains(r.stderr, c.want) ||
					!strings.Contains(r.stderr, "nothing was changed") || strings.Contains(r.stderr, "globals applied"):
					t.Errorf("restore %v: exit %d, want it refused before anything changed\n%s", args, r.code, r.stderr)
				}
				if n := relationsIn(t, f.pg, target); n != "0" {
					t.Errorf("restore %v left %s relations in the target", args, n)
				}
			}
			scratch := f.pg.CreateDB(t)
			if r = run(t, env, "verify", id, "--restore-to", f.pg.URL(scratch)); r.code != exitFailure || !strings.Contains(r.stderr, "does not match its manifest") {
				t.Errorf("verify --restore-to: exit %d\n%s", r.code, r.stderr)
			}

			// Retention: the damaged backup is not the good one kept, and
			// not deleted either.
			r = run(t, env, "prune", "--dry-run")
			if r.code != 0 || strings.Contains(r.stdout, "remove  "+f.old.ID) || strings.Contains(r.stdout, "remove  "+id) ||
				!strings.Contains(r.stdout, "keep  "+f.old.ID) || !strings.Contains(r.stderr, "left alone: "+id) {
				t.Errorf("prune --dry-run: exit %d, want %s kept and %s left alone\n%s%s", r.code, f.old.ID, id, r.stdout, r.stderr)
			}
			if r := run(t, env, "verify", f.old.ID); r.code != 0 {
				t.Errorf("verify %s, the other backup: %s", f.old.ID, r.stderr)
			}
		})
	}
}

// TestCorruptManifest: manifests that are not what pgbackups writes. One
// that cannot be trusted (bad JSON, another id than its folder's, no or an
// unknown status, an object key outside its folder, a negative size, a
// digest that is not hex, over the size limit) is listed as unreadable
// with the reason, refused by every command that would use it, stops
// `latest`, and is left alone by retention, which neither deletes it (as a
// failed backup) nor counts it as the good backup kept. A manifest never
// makes pgbackups read another backup's objects, or anything outside its
// own folder.
func TestCorruptManifest(t *testing.T) {
	f := newCorruptFixture(t)
	// A manifest claiming to be new while describing old's data: what a
	// copied folder with an edited id looks like.
	asOld := func(m map[string]any) {
		for _, k := range []string{"sha256", "dump_sha256", "stored_bytes", "dump_bytes", "tables"} {
			b, _ := json.Marshal(f.old)
			var om map[string]any
			json.Unmarshal(b, &om)
			m[k] = om[k]
		}
	}
	for _, c := range []struct {
		name   string
		broken string // the backup whose manifest is edited
		edit   func(m map[string]any)
		raw    []byte // instead of edit: the whole manifest
		want   string
	}{
		{name: "invalid JSON", broken: f.new.ID, raw: []byte(`{"id": "` + f.new.ID + `", "status": "compl`), want: "unexpected EOF"},
		{name: "no id", broken: f.new.ID, edit: func(m map[string]any) { delete(m, "id") }, want: "it has no id"},
		{name: "another backup's id", broken: f.new.ID, edit: func(m map[string]any) { m["id"] = f.old.ID }, want: `it names backup "` + f.old.ID + `"`},
		// On the older backup: taken for a failed one, it was deleted.
		{name: "no status", broken: f.old.ID, edit: func(m map[string]any) { delete(m, "status") }, want: "it has no status"},
		{name: "unknown status", broken: f.old.ID, edit: func(m map[string]any) { m["status"] = "verified" }, want: `unknown status "verified"`},
		{name: "data key outside its folder", broken: f.new.ID, edit: func(m map[string]any) { m["data_key"] = "../x" }, want: `data_key "../x" is outside the backup's own folder`},
		{name: "data key of another backup", broken: f.new.ID, edit: func(m map[string]any) { m["data_key"] = f.old.DataKey; asOld(m) },
			want: `data_key "` + f.old.DataKey + `" is outside the backup's own folder`},
		{name: "globals key outside its folder", broken: f.new.ID, edit: func(m map[string]any) { m["globals_key"] = "../../etc/passwd" },
			want: `globals_key "../../etc/passwd" is outside`},
		{name: "negative size", broken: f.new.ID, edit: func(m map[string]any) { m["stored_bytes"] = -5 }, want: "stored_bytes is negative (-5)"},
		{name: "sha256 not hex", broken: f.new.ID, edit: func(m map[string]any) { m["sha256"] = "not-a-digest" }, want: `sha256 "not-a-digest" is not a hex digest`},
		{name: "huge", broken: f.new.ID, raw: append(append([]byte(`{"id": "`+f.new.ID+`", "status": "completed", "warnings": ["`), bytes.Repeat([]byte("x"), 65<<20)...), `"]}`...),
			want: "over the 64 MiB a manifest may take"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := f.copyStore(t)
			env := f.env(dir)
			if c.raw != nil {
				writeFile(t, filepath.Join(dir, storage.ManifestKey(c.broken)), c.raw)
			} else {
				editManifest(t, dir, c.broken, c.edit)
			}
			good := f.old.ID
			if c.broken == f.old.ID {
				good = f.new.ID
			}
			problem := "backup " + c.broken + ": manifest is corrupt: "

			r := run(t, env, "list")
			if r.code != 0 || !strings.Contains(r.stdout, c.broken+"  unreadable") || !strings.Contains(r.stdout, good+"  completed") ||
				!strings.Contains(r.stderr, problem) || !strings.Contains(r.stderr, c.want) {
				t.Errorf("list: exit %d, want %s unreadable (%q) and %s completed\n%s%s", r.code, c.broken, c.want, good, r.stdout, r.stderr)
			}
			if ms := listJSON(t, env); len(ms) != 1 || ms[0].ID != good {
				t.Errorf("list --json: %d manifests, want only %s's", len(ms), good)
			}
			r = run(t, env, "info", c.broken)
			if r.code != exitFailure || !strings.Contains(r.stderr, problem) || !strings.Contains(r.stderr, c.want) {
				t.Errorf("info: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if c.broken == f.new.ID {
				if r = run(t, env, "info", "latest"); r.code != exitFailure || !strings.Contains(r.stderr, "latest: "+problem) {
					t.Errorf("info latest: exit %d, want it stopped at %s\n%s%s", r.code, c.broken, r.stdout, r.stderr)
				}
			}
			if c.name == "huge" {
				return // the rest reads it the same way
			}
			target := f.pg.CreateDB(t)
			for _, args := range [][]string{
				{"download", c.broken, "-o", filepath.Join(t.TempDir(), "x.dump")},
				{"download", c.broken, "-o", "-"},
				{"verify", c.broken},
				{"restore", c.broken, "--to", f.pg.URL(target), "--confirm", target, "--with-globals"},
			} {
				r = run(t, env, args...)
				if r.code != exitFailure || !strings.Contains(r.stderr, problem) || !strings.Contains(r.stderr, c.want) || r.stdout != "" {
					t.Errorf("%s: exit %d, %d bytes out\n%s", args[0], r.code, len(r.stdout), r.stderr)
				}
			}
			if n := relationsIn(t, f.pg, target); n != "0" {
				t.Errorf("restore left %s relations in the target", n)
			}

			r = run(t, env, "prune", "--dry-run")
			if r.code != 0 || strings.Contains(r.stdout, "remove  ") || !strings.Contains(r.stdout, "keep  "+good) || !strings.Contains(r.stderr, "left alone: "+c.broken) {
				t.Errorf("prune --dry-run: exit %d, want %s kept and %s left alone\n%s%s", r.code, good, c.broken, r.stdout, r.stderr)
			}
			if r := run(t, env, "prune"); r.code != 0 {
				t.Fatalf("prune: %s", r.stderr)
			}
			for _, m := range []storage.Manifest{f.old, f.new} {
				for _, key := range []string{storage.ManifestKey(m.ID), m.DataKey, m.GlobalsKey} {
					if _, err := os.Stat(filepath.Join(dir, key)); err != nil {
						t.Errorf("after prune: %v", err)
					}
				}
			}
		})
	}

	// A completed manifest that names no data object: list and info show
	// it damaged, nothing reads it, and retention
	// keeps the older backup that does restore.
	t.Run("no data key", func(t *testing.T) {
		dir := f.copyStore(t)
		env := f.env(dir)
		editManifest(t, dir, f.new.ID, func(m map[string]any) { delete(m, "data_key") })
		want := "names no data object"
		if r := run(t, env, "list"); r.code != 0 || !strings.Contains(r.stdout, f.new.ID+"  damaged") || !strings.Contains(r.stderr, "names no data object (data_key is empty)") {
			t.Errorf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r := run(t, env, "info", f.new.ID); r.code != 0 || !strings.Contains(r.stdout, "Problem:") || !strings.Contains(r.stdout, want) {
			t.Errorf("info: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		target := f.pg.CreateDB(t)
		for _, args := range [][]string{
			{"download", f.new.ID, "-o", filepath.Join(t.TempDir(), "x.dump")},
			{"verify", f.new.ID},
			{"restore", f.new.ID, "--to", f.pg.URL(target), "--confirm", target, "--with-globals"},
		} {
			if r := run(t, env, args...); r.code != exitFailure || !strings.Contains(r.stderr, f.new.ID) || !strings.Contains(r.stderr, want) {
				t.Errorf("%s: exit %d\n%s", args[0], r.code, r.stderr)
			}
		}
		if r := run(t, env, "prune", "--dry-run"); r.code != 0 || strings.Contains(r.stdout, "remove  ") || !strings.Contains(r.stdout, "keep  "+f.old.ID) {
			t.Errorf("prune --dry-run: exit %d, want %s kept\n%s%s", r.code, f.old.ID, r.stdout, r.stderr)
		}
	})

	// A manifest that names its data object but has no digest to check it
	// against: info says that, and not that it names no data object.
	t.Run("no sha256", func(t *testing.T) {
		dir := f.copyStore(t)
		env := f.env(dir)
		editManifest(t, dir, f.new.ID, func(m map[string]any) { delete(m, "sha256") })
		r := run(t, env, "info", f.new.ID)
		if r.code != 0 || !strings.Contains(r.stdout, `sha256 "" is not a sha256 digest`) || strings.Contains(r.stdout, "names no data object") {
			t.Errorf("info: exit %d, want the missing digest named, and the data object not called missing\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	// Strays: files at the root, a folder that is no backup's, a file nested
	// in a backup's folder, and a backup folder copied under another id
	// whose manifest still names the original: two manifests of one id.
	t.Run("strays and a copied backup", func(t *testing.T) {
		dir := f.copyStore(t)
		env := f.env(dir)
		writeFile(t, filepath.Join(dir, "README"), []byte("backups of app"))
		writeFile(t, filepath.Join(dir, f.old.ID+".dump"), []byte("a download someone left"))
		os.MkdirAll(filepath.Join(dir, "notes", "2026"), 0o700)
		writeFile(t, filepath.Join(dir, "notes", "2026", "x"), []byte("x"))
		os.MkdirAll(filepath.Join(dir, f.new.ID, "extra"), 0o700)
		writeFile(t, filepath.Join(dir, f.new.ID, "extra", "y"), []byte("y"))
		copied := storage.NewID(f.old.StartedAt.Add(-time.Hour))
		os.MkdirAll(filepath.Join(dir, copied), 0o700)
		for _, suffix := range []string{".manifest.json", ".dump.zst", ".globals.sql.zst"} {
			b, _ := os.ReadFile(filepath.Join(dir, f.old.ID, f.old.ID+suffix))
			writeFile(t, filepath.Join(dir, copied, copied+suffix), b)
		}
		r := run(t, env, "list")
		if r.code != 0 || !strings.Contains(r.stdout, f.new.ID+"  completed") || !strings.Contains(r.stdout, f.old.ID+"  completed") ||
			!strings.Contains(r.stdout, copied+"  unreadable") || !strings.Contains(r.stderr, `it names backup "`+f.old.ID+`"`) {
			t.Errorf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r := run(t, env, "restore", copied, "--to", f.pg.URL(f.src), "--confirm", f.src); r.code != exitFailure || !strings.Contains(r.stderr, `it names backup "`+f.old.ID+`"`) {
			t.Errorf("restore of the copy: exit %d\n%s", r.code, r.stderr)
		}
		r = run(t, env, "prune")
		if r.code != 0 || !strings.Contains(r.stdout, "removed  "+f.old.ID) || !strings.Contains(r.stderr, "left alone: "+copied) {
			t.Errorf("prune: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, p := range []string{"README", f.old.ID + ".dump", "notes/2026/x", f.new.ID + "/extra/y", storage.ManifestKey(copied), storage.DataKey(f.new.ID)} {
			if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
				t.Errorf("after prune: %v", err)
			}
		}
	})
}

// TestCorruptGlobals: a backup's globals object missing, garbage, or
// other SQL than its manifest's sha256 says. restore --with-globals fails
// before touching the target or its cluster, naming the object; verify
// fails (a backup is its globals too); a plain restore, which does not
// read them, works; list shows a missing one, and retention does not count
// that backup as the good one kept.
func TestCorruptGlobals(t *testing.T) {
	f := newCorruptFixture(t)
	key := f.new.GlobalsKey
	for _, c := range []struct {
		name string
		data []byte // nil: removed
		want string
	}{
		{"missing", nil, "its globals object " + key + " is missing"},
		{"garbage", []byte("not zstd at all"), "globals " + key + ": stored object does not match its manifest"},
		{"other SQL", zstdCompress(t, []byte("CREATE ROLE corrupt_globals_probe;\n")), "globals " + key + ": stored object does not match its manifest: sha256"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := f.storeWith(t, key, c.data)
			env := f.env(dir)
			target := f.pg.CreateDB(t)
			r := run(t, env, "restore", f.new.ID, "--to", f.pg.URL(target), "--confirm", target, "--with-globals")
			if r.code != exitFailure || !strings.Contains(r.stderr, "does not match its manifest") || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "nothing was changed") {
				t.Errorf("restore --with-globals: exit %d, want %q and nothing changed\n%s", r.code, c.want, r.stderr)
			}
			if n := relationsIn(t, f.pg, target); n != "0" {
				t.Errorf("restore --with-globals left %s relations", n)
			}
			if got := f.pg.QueryString(t, "postgres", `SELECT count(*)::text FROM pg_roles WHERE rolname = 'corrupt_globals_probe'`); got != "0" {
				t.Errorf("globals that do not match their sha256 were applied")
			}
			r = run(t, env, "verify", f.new.ID)
			if r.code != exitFailure || !strings.Contains(r.stderr, "does not match its manifest") || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stdout, "is good") {
				t.Errorf("verify: exit %d, want %q\n%s%s", r.code, c.want, r.stdout, r.stderr)
			}
			if r := run(t, env, "restore", f.new.ID, "--to", f.pg.URL(target), "--confirm", target); r.code != 0 {
				t.Errorf("restore without --with-globals: %s", r.stderr)
			}
			if c.data != nil {
				return // a listing cannot tell
			}
			// It restores without its globals, as above: list says so
			// rather than that it cannot be restored.
			if r := run(t, env, "list"); r.code != 0 || !strings.Contains(r.stdout, f.new.ID+"  damaged") || !strings.Contains(r.stderr, "its globals object "+key+" is missing") ||
				!strings.Contains(r.stderr, "its data restores without --with-globals") || strings.Contains(r.stderr, "it cannot be restored") {
				t.Errorf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if r := run(t, env, "prune", "--dry-run"); r.code != 0 || strings.Contains(r.stdout, "remove  ") || !strings.Contains(r.stdout, "keep  "+f.old.ID) {
				t.Errorf("prune --dry-run: exit %d, want %s kept\n%s%s", r.code, f.old.ID, r.stdout, r.stderr)
			}
		})
	}
	if r := run(t, f.env(f.pristine), "verify", f.new.ID); r.code != 0 || !strings.Contains(r.stdout, "stored, archive and globals sha256 match") {
		t.Errorf("verify of the intact backup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestRestoreTellsDamageFromRestoreErrors: damage that still decompresses
// (zstd checks a frame's checksum only at its end) reaches pg_restore as
// nonsense, and pg_restore fails on it before the stream ends. The
// restore must still say the backup is damaged, and what state the target
// may be in, not pass pg_restore's complaint off as the cause; and a
// pg_restore error on an intact backup must not be called damage.
func TestRestoreTellsDamageFromRestoreErrors(t *testing.T) {
	f := newCorruptFixture(t)
	row := []byte("user100@example.com\t")
	at := bytes.Index(f.archive, row)
	if at < 0 || !bytes.HasPrefix(f.archive, []byte("PGDMP")) {
		t.Fatal("the archive is not what this test expects")
	}
	for _, c := range []struct {
		name   string
		damage func(b []byte)
	}{
		{"header", func(b []byte) { b[0] = 'X' }},                 // pg_restore: not an archive
		{"table data", func(b []byte) { b[at+len(row)-1] = ' ' }}, // COPY: missing data for a column
	} {
		t.Run(c.name, func(t *testing.T) {
			archive := bytes.Clone(f.archive)
			c.damage(archive)
			env := f.env(f.storeWithArchive(t, archive))

			target := f.pg.CreateDB(t)
			r := run(t, env, "restore", f.new.ID, "--to", f.pg.URL(target), "--confirm", target)
			if r.code != exitFailure || !strings.Contains(r.stderr, "does not match its manifest") || !strings.Contains(r.stderr, "the target database may be partly restored") {
				t.Errorf("restore: exit %d, want the damage named and the target's state\n%s", r.code, r.stderr)
			}
			scratch := f.pg.CreateDB(t)
			r = run(t, env, "verify", f.new.ID, "--restore-to", f.pg.URL(scratch))
			if r.code != exitFailure || !strings.Contains(r.stderr, "does not match its manifest") {
				t.Errorf("verify --restore-to: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
		})
	}

	t.Run("intact, pg_restore fails", func(t *testing.T) {
		target := f.pg.CreateDB(t)
		// Empty, so the restore starts, and the server refuses its first
		// statement.
		f.pg.Exec(t, "postgres", `ALTER DATABASE `+target+` SET default_transaction_read_only = on`)
		r := run(t, f.env(f.pristine), "restore", f.new.ID, "--to", f.pg.URL(target), "--confirm", target)
		// Not read to its end first (a large backup would keep the answer
		// waiting): verify is suggested instead.
		if r.code != exitFailure || !strings.Contains(r.stderr, "read-only transaction") || strings.Contains(r.stderr, "does not match its manifest") ||
			!strings.Contains(r.stderr, "run `pgbackups verify "+f.new.ID+"`") || strings.Contains(r.stderr, "reading the rest of the backup") {
			t.Errorf("restore: exit %d, want pg_restore's error, no damage claimed, verify suggested and the rest not read\n%s", r.code, r.stderr)
		}
	})
}

// TestDaemonRetentionKeepsGoodBackups: the daemon's retention pass (the
// prune it runs after each backup, KEEP_LAST=1 here) over a store whose
// newer backups are broken in ways a listing shows, or whose older one has
// a manifest with an unknown status: the good backup is kept, nothing
// broken is deleted or counted as the good one, and each is logged.
func TestDaemonRetentionKeepsGoodBackups(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	cat := storage.Catalog{Store: st}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	backup := func(hoursAgo int, data string, edit func(m *storage.Manifest)) string {
		t.Helper()
		at := now.Add(-time.Duration(hoursAgo) * time.Hour)
		m := storage.Manifest{ID: storage.NewID(at), Status: storage.StatusCompleted, StartedAt: at, FinishedAt: at.Add(time.Minute),
			StoredBytes: 4, SHA256: strings.Repeat("ab", 32), DumpSHA256: strings.Repeat("cd", 32)}
		m.DataKey = storage.DataKey(m.ID)
		if data != "" {
			writeObject(t, st, m.DataKey, []byte(data))
		}
		if edit != nil {
			edit(&m)
		}
		if err := cat.WriteManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	unknown := backup(5, "data", func(m *storage.Manifest) { m.Status = "verified" }) // older than the good one
	good := backup(4, "data", nil)
	missing := backup(3, "", nil)
	cut := backup(2, "da", nil)
	noKey := backup(1, "data", func(m *storage.Manifest) { m.DataKey = "" })

	var logs bytes.Buffer
	removed, alone, err := prune(ctx, cat, storage.PruneOptions{Policy: schedule.Policy{KeepLast: 1}, Location: time.UTC, Now: now, Grace: 24 * time.Hour},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || removed != 0 || alone != 4 {
		t.Errorf("retention removed %d and left alone %d, err %v; want nothing removed and the 4 broken backups left alone (the daemon's gauge)\n%s", removed, alone, err, logs.String())
	}
	for _, id := range []string{unknown, good, missing, cut, noKey} {
		if _, err := cat.Manifest(ctx, id); err != nil && !strings.Contains(err.Error(), "unknown status") {
			t.Errorf("%s: %v", id, err)
		}
		if !strings.Contains(logs.String(), "backup="+id) && id != good {
			t.Errorf("retention did not log %s:\n%s", id, logs.String())
		}
	}
	for _, want := range []string{`unknown status \"verified\"`, storage.DataKey(missing) + " is missing", storage.DataKey(cut) + " is 2 bytes, the manifest says 4", "names no data object (data_key is empty)"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("retention log lacks %q:\n%s", want, logs.String())
		}
	}
	res, err := storage.Prune(ctx, cat, storage.PruneOptions{Policy: schedule.Policy{KeepLast: 1}, Location: time.UTC, Now: now, Grace: 24 * time.Hour, DryRun: true})
	if err != nil || len(res.Kept) != 1 || res.Kept[0].ID != good || len(res.Unreadable) != 4 {
		t.Errorf("kept %+v, %d left alone, %v; want %s kept as the one good backup", res.Kept, len(res.Unreadable), err, good)
	}
}

// TestVerifyReadsPastARefusedStatement: verify's answer is the checksums.
// When the scratch database refuses a statement early (here: it is
// read-only), restore answers at once, but verify must still read the
// whole backup and report damage in it, not pg_restore's complaint with a
// hint to run verify.
func TestVerifyReadsPastARefusedStatement(t *testing.T) {
	f := newCorruptFixture(t)
	row := []byte("user100@example.com\t")
	at := bytes.Index(f.archive, row)
	if at < 0 {
		t.Fatal("the archive is not what this test expects")
	}
	archive := bytes.Clone(f.archive)
	archive[at+len(row)-1] = ' ' // a COPY row that does not parse
	dir := f.storeWithArchive(t, archive)

	scratch := f.pg.CreateDB(t)
	// Empty, so verify starts, and the server refuses pg_restore's first
	// statement.
	f.pg.Exec(t, "postgres", `ALTER DATABASE `+scratch+` SET default_transaction_read_only = on`)
	r := run(t, f.env(dir), "verify", f.new.ID, "--restore-to", f.pg.URL(scratch))
	if r.code != exitFailure || !strings.Contains(r.stderr, "does not match its manifest") || strings.Contains(r.stderr, "run `pgbackups verify") {
		t.Errorf("verify --restore-to of a damaged backup into a scratch database that refuses a statement: exit %d, want the damage reported\n%s", r.code, r.stderr)
	}

	// An intact backup into that scratch database: pg_restore's complaint
	// and the checksums' verdict, with no advice verify cannot take (it
	// has no --clean).
	r = run(t, f.env(f.pristine), "verify", f.new.ID, "--restore-to", f.pg.URL(scratch))
	if r.code != exitFailure || !strings.Contains(r.stderr, "read-only transaction") || !strings.Contains(r.stderr, "checksums match") ||
		strings.Contains(r.stderr, "--clean") {
		t.Errorf("verify --restore-to of a good backup into a scratch database that refuses it: exit %d, want pg_restore's complaint and the checksums' verdict\n%s", r.code, r.stderr)
	}

	// A scratch database that is not empty is refused before anything,
	// with advice verify can take.
	full := f.pg.CreateDB(t)
	f.pg.Exec(t, full, `CREATE SCHEMA app`)
	r = run(t, f.env(f.pristine), "verify", f.new.ID, "--restore-to", f.pg.URL(full))
	if r.code != exitFailure || !strings.Contains(r.stderr, "is not empty (1 schema)") || !strings.Contains(r.stderr, "empty scratch database: drop and re-create it") || strings.Contains(r.stderr, "--clean") {
		t.Errorf("verify --restore-to into a scratch database holding a schema: exit %d, want it refused as not empty\n%s", r.code, r.stderr)
	}
}
