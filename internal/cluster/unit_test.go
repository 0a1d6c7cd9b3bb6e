package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/model"
)

func TestParseStoreURL(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"etcd://h1:2379,h2:2379", []string{"h1:2379", "h2:2379"}, ""},
		{"etcd://10.0.0.1", []string{"10.0.0.1:2379"}, ""},
		{" etcd://a:1,b/ ", []string{"a:1", "b:2379"}, ""},
		{"etcd://[2001:db8::1]:2379,[2001:db8::2]", []string{"[2001:db8::1]:2379", "[2001:db8::2]:2379"}, ""},
		{"consul://h1:8500", nil, `unsupported store "consul"`},
		{"h1:2379", nil, "want etcd://"},
		{"etcd://", nil, "no host"},
		{"etcd://h1:2379,", nil, "empty host"},
		{"etcd://h1:99999", nil, "bad port"},
		{"etcd://h1:x", nil, "bad port"},
		{"etcd://h1/path", nil, "no path"},
		{"etcd://user@h1", nil, "no path"},
		{"etcd://2001:db8::1", nil, "bracket IPv6"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseStoreURL(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, model.ErrInvalid) {
					t.Fatalf("ParseStoreURL(%q) = %v, %v; want invalid error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseStoreURL(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzParseStoreURL(f *testing.F) {
	for _, s := range []string{"etcd://h1:2379,h2:2379", "etcd://[::1]", "etcd://a:b:c", "x://", "etcd://,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		eps, err := ParseStoreURL(s)
		if err != nil {
			if !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if len(eps) == 0 {
			t.Fatal("no endpoints and no error")
		}
		for _, ep := range eps {
			// Every endpoint parses again as a one-host store URL.
			again, err := ParseStoreURL("etcd://" + ep)
			if err != nil || len(again) != 1 || again[0] != ep {
				t.Fatalf("endpoint %q does not round-trip: %v %v", ep, again, err)
			}
		}
	})
}

func TestLoadOrCreateNodeID(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data")
	// Concurrent first calls agree on one ID.
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := LoadOrCreateNodeID(root)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] || len(id) != 32 {
			t.Fatalf("ids %v: want one 32-digit ID", ids)
		}
	}
	again, err := LoadOrCreateNodeID(root)
	if err != nil || again != ids[0] {
		t.Fatalf("reload: %q %v, want %q", again, err, ids[0])
	}
	other, err := LoadOrCreateNodeID(t.TempDir())
	if err != nil || other == ids[0] {
		t.Fatalf("another data root got %q %v", other, err)
	}
	if err := os.WriteFile(filepath.Join(root, nodeIDFile), []byte("  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateNodeID(root); err == nil {
		t.Fatal("empty node-id file accepted")
	}
}

func TestOptionsValidation(t *testing.T) {
	ok := func() Options {
		return Options{NodeID: "n", Endpoints: []string{"127.0.0.1:2379"}}
	}
	tests := []struct {
		name string
		mod  func(*Options)
	}{
		{"no node ID", func(o *Options) { o.NodeID = "" }},
		{"slash in node ID", func(o *Options) { o.NodeID = "a/b" }},
		{"external and embedded", func(o *Options) { o.Init = true }},
		{"init and join", func(o *Options) {
			o.Endpoints = nil
			o.Init = true
			o.Join = "x"
			o.DataDir = "/d"
			o.AdvertiseAddr = loopback
		}},
		{"embedded without data dir", func(o *Options) { o.Endpoints = nil; o.Init = true; o.AdvertiseAddr = loopback }},
		{"embedded without address", func(o *Options) { o.Endpoints = nil; o.Init = true; o.DataDir = "/d" }},
		{"even voters", func(o *Options) { o.Voters = 4 }},
		{"short TTL", func(o *Options) { o.NodeTTL = 1 }},
		{"cert without key", func(o *Options) { o.CertFile = "c" }},
		{"cert expiry without init", func(o *Options) {
			o.Endpoints = nil
			o.Join = "x"
			o.DataDir = "/d"
			o.AdvertiseAddr = loopback
			o.CertExpiry = time.Hour
		}},
		{"short cert expiry", func(o *Options) {
			o.Endpoints = nil
			o.Init = true
			o.DataDir = "/d"
			o.AdvertiseAddr = loopback
			o.CertExpiry = time.Second
		}},
	}
	if _, err := withDefaults(ok()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok()
			tt.mod(&o)
			if _, err := withDefaults(o); !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("got %v, want invalid", err)
			}
		})
	}
	o, _ := withDefaults(ok())
	if o.Prefix != DefaultPrefix || o.Voters != 3 || o.NodeTTL != DefaultNodeTTL || o.RequestTimeout != DefaultRequestTimeout {
		t.Errorf("defaults %+v", o)
	}
}
