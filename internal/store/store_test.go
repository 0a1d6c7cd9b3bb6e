package store

import (
	"errors"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/vxnet/vxnet/internal/model"
)

func TestRoundTripAndTransactions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ep := model.Endpoint{ID: "e1", NetworkID: "n1", Addr: netip.MustParsePrefix("172.18.0.2/16"),
		MAC: model.MACForIP(netip.MustParseAddr("172.18.0.2")), IfName: "eth0"}
	if err := s.Put(Endpoints, ep.ID, ep); err != nil {
		t.Fatal(err)
	}
	// A failed transaction leaves nothing.
	boom := errors.New("boom")
	err = s.Update(func(tx *Tx) error {
		if err := tx.Put(Endpoints, "e2", ep); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	s.Close()

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	eps, err := List[model.Endpoint](s, Endpoints)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 1 || eps[0].Addr != ep.Addr || eps[0].MAC.String() != "02:42:ac:12:00:02" {
		t.Fatalf("got %+v", eps)
	}
	var got model.Endpoint
	if err := s.Get(Endpoints, "e2", &got); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("e2: err = %v, want not found", err)
	}
	if err := s.Delete(Endpoints, "e1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(Endpoints, "e1"); err != nil {
		t.Fatalf("delete twice: %v", err)
	}
}
