package cluster

// The join service: HTTPS on every voting member's advertise address
// (Options.JoinPort, default 2377, like swarm's), with the member's
// certificate. A new host fetches the CA over it, checks the CA against
// the digest in its join token, proves the token's secret, sends a
// certificate request and receives its certificate, its role and what it
// needs to start or reach etcd. Members already holding a certificate
// authenticate with it instead of a token (a client host restarting,
// renewing its certificate, leaving).
//
// Everything a refused join could leave behind is checked first: the token,
// the node ID and the request. Only then does the voter add the etcd member
// (for a new voter) and the etcd user, and sign the certificate.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/pki"
)

// DefaultJoinPort is the join service's port.
const DefaultJoinPort = 2377

type joinRequest struct {
	Secret     string     `json:"Secret,omitempty"` // empty when the client certificate authenticates
	NodeID     string     `json:"NodeID"`
	Hostname   string     `json:"Hostname"`
	Addr       netip.Addr `json:"Addr"`
	ClientPort int        `json:"ClientPort"`
	PeerPort   int        `json:"PeerPort"`
	CSR        []byte     `json:"CSR"`
}

type joinResponse struct {
	CACert         []byte   `json:"CACert"`
	CAKey          []byte   `json:"CAKey,omitempty"` // voting members only
	Cert           []byte   `json:"Cert"`
	Voter          bool     `json:"Voter"`
	MemberID       uint64   `json:"MemberID,omitempty"`
	InitialCluster string   `json:"InitialCluster,omitempty"`
	Endpoints      []string `json:"Endpoints"` // client URLs of the voting members
}

type renewRequest struct {
	CSR []byte `json:"CSR"`
}

type renewResponse struct {
	Cert []byte `json:"Cert"`
}

type errorResponse struct {
	Message string `json:"message"`
}

// validNodeID is what a joiner may call itself: what LoadOrCreateNodeID
// makes, and the names tests use.
var validNodeID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// startJoinService serves the join service on the advertise address until
// Close.
func (c *Cluster) startJoinService() error {
	addr := netip.AddrPortFrom(c.opts.AdvertiseAddr, uint16(c.opts.JoinPort)).String()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cluster: join service: %w", err)
	}
	id := c.id
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			// The CA travels in the chain: a joiner pins it by digest.
			nc := id.nodeCert()
			chain := *nc
			chain.Certificate = append(slices.Clone(nc.Certificate), id.ca.Cert.Raw)
			return &chain, nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  id.ca.Pool(),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/join", c.serveJoin)
	mux.HandleFunc("POST /v1/renew", c.serveRenew)
	mux.HandleFunc("POST /v1/leave", c.serveLeave)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug), BaseContext: func(net.Listener) context.Context { return c.ctx }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(tls.NewListener(l, tc))
	}()
	c.mu.Lock()
	c.stopJoin = func() { srv.Close(); <-done }
	c.mu.Unlock()
	c.log.Info("join service listening", "addr", addr)
	return nil
}

func writeJoinError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(errorResponse{Message: fmt.Sprintf(format, args...)})
}

func writeJoinJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// peerNodeID returns the node ID of the verified client certificate, if
// one was presented.
func peerNodeID(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	return r.TLS.VerifiedChains[0][0].Subject.CommonName
}

func decodeJoinBody(r *http.Request, v any) error {
	return json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(v)
}

func (c *Cluster) serveJoin(w http.ResponseWriter, r *http.Request) {
	var req joinRequest
	if err := decodeJoinBody(r, &req); err != nil {
		writeJoinError(w, http.StatusBadRequest, "malformed join request: %v", err)
		return
	}
	if !validNodeID.MatchString(req.NodeID) || req.NodeID == pki.RootUser {
		writeJoinError(w, http.StatusBadRequest, "invalid node ID %q", req.NodeID)
		return
	}
	if !req.Addr.IsValid() || req.ClientPort <= 0 || req.ClientPort > 65535 || req.PeerPort <= 0 || req.PeerPort > 65535 {
		writeJoinError(w, http.StatusBadRequest, "join request needs an address and ports")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.opts.StartTimeout)
	defer cancel()
	log := c.log.With("joiner", req.NodeID, "addr", req.Addr, "remote", r.RemoteAddr)
	byCert := peerNodeID(r)
	switch {
	case byCert != "":
		if byCert != req.NodeID {
			writeJoinError(w, http.StatusForbidden, "the client certificate names %q, not %q", byCert, req.NodeID)
			return
		}
		ok, err := memberExists(ctx, c.admin, req.NodeID)
		if err != nil {
			writeJoinError(w, http.StatusServiceUnavailable, "cluster store unreachable: %v", err)
			return
		}
		if !ok {
			log.Warn("join refused: node was removed")
			writeJoinError(w, http.StatusForbidden, "node %s was removed from the cluster: its certificate is revoked; delete its certificates and join again with a token", req.NodeID)
			return
		}
	case req.Secret == "":
		writeJoinError(w, http.StatusForbidden, "no join token given")
		return
	default:
		ok, err := c.checkSecret(ctx, req.Secret)
		if err != nil {
			writeJoinError(w, http.StatusServiceUnavailable, "cluster store unreachable: %v", err)
			return
		}
		if !ok {
			log.Warn("join refused: wrong or rotated join token")
			writeJoinError(w, http.StatusForbidden, "join token refused: it is not the cluster's current token (wrong or rotated)")
			return
		}
		rec, err := c.admin.Get(ctx, c.key("nodes", req.NodeID), clientv3.WithCountOnly())
		if err != nil {
			writeJoinError(w, http.StatusServiceUnavailable, "cluster store unreachable: %v", err)
			return
		}
		if rec.Count > 0 {
			writeJoinError(w, http.StatusConflict, "node ID %s is already in the cluster", req.NodeID)
			return
		}
	}
	// Check the request before anything is added to the cluster.
	if underlayFamily(c.opts.AdvertiseAddr, req.Addr) != nil {
		log.Warn("join refused: the joiner's advertise address is of the other family")
		writeJoinError(w, http.StatusBadRequest, "advertise address %s is %s, but this cluster's hosts advertise %s addresses (this one %s): "+
			"a cluster cannot mix underlay address families (a VXLAN device has one local address family); give --advertise-addr an %s address",
			req.Addr, family(req.Addr), family(c.opts.AdvertiseAddr), c.opts.AdvertiseAddr, family(c.opts.AdvertiseAddr))
		return
	}
	if _, err := c.id.ca.IssueCSR(req.CSR, req.NodeID, certIPs(req.Addr), time.Minute); err != nil {
		writeJoinError(w, http.StatusBadRequest, "%v", err)
		return
	}
	ml, err := c.admin.MemberList(ctx)
	if err != nil {
		writeJoinError(w, http.StatusServiceUnavailable, "cluster store unreachable: %v", err)
		return
	}
	if roleOf(ml.Members, req.NodeID) != RoleClient {
		writeJoinError(w, http.StatusConflict, "node %s already runs an etcd member; restart it with its data directory", req.NodeID)
		return
	}
	// While the learner slots are full only because promotions are due,
	// wait a little for them (see joinRole).
	role := joinRole(ml.Members, c.opts.Voters)
	for i := 0; role == "wait" && i < 20; i++ {
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			writeJoinError(w, http.StatusServiceUnavailable, "join: %v", err)
			return
		}
		if ml, err = c.admin.MemberList(ctx); err != nil {
			writeJoinError(w, http.StatusServiceUnavailable, "cluster store unreachable: %v", err)
			return
		}
		role = joinRole(ml.Members, c.opts.Voters)
	}
	resp := joinResponse{CACert: c.id.ca.CertPEM, Endpoints: voterClientURLs(ml.Members, "")}
	var added uint64
	if role == RoleLearner {
		peer := urlFor(req.Addr, req.PeerPort).String()
		add, err := c.addLearner(ctx, peer)
		if err != nil {
			writeJoinError(w, http.StatusServiceUnavailable, "add etcd member: %v", err)
			return
		}
		added = add.Member.ID
		resp.Voter, resp.MemberID = true, add.Member.ID
		resp.InitialCluster = initialCluster(add.Members, add.Member.ID, req.NodeID)
		if resp.CAKey, err = pki.KeyPEM(c.id.ca.Key); err != nil {
			writeJoinError(w, http.StatusInternalServerError, "%v", err)
			return
		}
	}
	undo := func() {
		if added != 0 {
			rctx, cancel := c.reqCtx(context.Background())
			defer cancel()
			if _, err := c.admin.MemberRemove(rctx, added); err != nil {
				log.Warn("could not undo member add", "err", err)
			}
		}
	}
	if err := c.grantMember(ctx, c.admin, req.NodeID); err != nil {
		undo()
		writeJoinError(w, http.StatusServiceUnavailable, "cluster store unreachable: %v", err)
		return
	}
	if resp.Cert, err = c.id.ca.IssueCSR(req.CSR, req.NodeID, certIPs(req.Addr), c.certValidity(ctx)); err != nil {
		undo()
		writeJoinError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	log.Info("admitted node", "voter", resp.Voter, "by-certificate", byCert != "")
	writeJoinJSON(w, resp)
}

// addLearner adds an etcd learner, waiting while etcd refuses because
// another host is joining (one learner at a time) or a member joined just
// now (etcd wants the cluster healthy for a few seconds).
func (c *Cluster) addLearner(ctx context.Context, peer string) (*clientv3.MemberAddResponse, error) {
	for attempt := 0; ; attempt++ {
		rctx, cancel := c.reqCtx(ctx)
		add, err := c.admin.MemberAddAsLearner(rctx, []string{peer})
		cancel()
		if err == nil {
			return add, nil
		}
		if !errors.Is(err, rpctypes.ErrTooManyLearners) && !errors.Is(err, rpctypes.ErrUnhealthy) {
			return nil, err
		}
		if err := sleepCtx(ctx, time.Duration(200+100*min(attempt, 10))*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// initialCluster is etcd's --initial-cluster for the new member id named
// name.
func initialCluster(ms []*etcdserverpb.Member, id uint64, name string) string {
	var out string
	for _, m := range ms {
		n := m.Name
		if m.ID == id {
			n = name
		}
		if n == "" {
			continue // another member still starting
		}
		for _, u := range m.PeerURLs {
			if out != "" {
				out += ","
			}
			out += n + "=" + u
		}
	}
	return out
}

func (c *Cluster) serveRenew(w http.ResponseWriter, r *http.Request) {
	node := peerNodeID(r)
	if node == "" {
		writeJoinError(w, http.StatusForbidden, "renewing a certificate needs the current one")
		return
	}
	var req renewRequest
	if err := decodeJoinBody(r, &req); err != nil {
		writeJoinError(w, http.StatusBadRequest, "malformed renew request: %v", err)
		return
	}
	ctx, cancel := c.reqCtx(r.Context())
	defer cancel()
	ok, err := memberExists(ctx, c.admin, node)
	if err != nil {
		writeJoinError(w, http.StatusServiceUnavailable, "cluster store unreachable: %v", err)
		return
	}
	if !ok || node == pki.RootUser {
		writeJoinError(w, http.StatusForbidden, "node %s was removed from the cluster", node)
		return
	}
	var ips []netip.Addr
	for _, ip := range r.TLS.VerifiedChains[0][0].IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			ips = append(ips, a.Unmap())
		}
	}
	cert, err := c.id.ca.IssueCSR(req.CSR, node, ips, c.certValidity(ctx))
	if err != nil {
		writeJoinError(w, http.StatusBadRequest, "%v", err)
		return
	}
	c.log.Info("renewed certificate", "node", node)
	writeJoinJSON(w, renewResponse{Cert: cert})
}

func (c *Cluster) serveLeave(w http.ResponseWriter, r *http.Request) {
	node := peerNodeID(r)
	if node == "" || node == pki.RootUser {
		writeJoinError(w, http.StatusForbidden, "leaving needs the member's certificate")
		return
	}
	ctx, cancel := c.reqCtx(r.Context())
	defer cancel()
	if err := c.revokeMember(ctx, c.admin, node); err != nil {
		writeJoinError(w, http.StatusServiceUnavailable, "cluster store unreachable: %v", err)
		return
	}
	c.log.Info("node left; its etcd user is deleted", "node", node)
	w.WriteHeader(http.StatusNoContent)
}

// --- the joiner's side ---

// caMismatchError is a join service presenting a CA other than the one
// the token pins.
type caMismatchError struct{ got, want string }

func (e *caMismatchError) Error() string {
	return fmt.Sprintf("the cluster's CA (sha256:%s) does not match the join token's (sha256:%s)", short(e.got), short(e.want))
}

func short(d string) string {
	if len(d) > 16 {
		return d[:16] + "..."
	}
	return d
}

// refusedError is a join refused for a reason: it prints the reason alone
// and matches kind (model.ErrForbidden, ...).
type refusedError struct {
	kind error
	msg  string
}

func (e *refusedError) Error() string { return e.msg }
func (e *refusedError) Unwrap() error { return e.kind }

// joinTLS is the TLS configuration towards a join service: the server's
// chain must lead to the CA pinned by digest (a join with a token) or to
// the CA this member already holds.
func (c *Cluster) joinTLS(digest string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is checked below against the pinned CA; the join
		// address may be any address or name of the voter.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("join service sent no certificate")
			}
			var ca *x509.Certificate
			if digest != "" {
				for _, pc := range cs.PeerCertificates[1:] {
					if pki.Digest(pc.Raw) == digest && pc.IsCA {
						ca = pc
					}
				}
				if ca == nil {
					last := cs.PeerCertificates[len(cs.PeerCertificates)-1]
					return &caMismatchError{got: pki.Digest(last.Raw), want: digest}
				}
			} else if c.id != nil {
				ca = c.id.ca.Cert
			} else {
				return errors.New("no CA to check the join service against")
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c.id == nil || digest != "" {
				return &tls.Certificate{}, nil
			}
			return c.id.nodeCert(), nil
		},
	}
}

// joinCall POSTs req to path on the join service at addr and decodes the
// answer into resp. A refusal is an error wrapping model.ErrForbidden (or
// ErrInvalid, ErrConflict) with the service's message; an unreachable
// service is an unavailable error.
func (c *Cluster) joinCall(ctx context.Context, addr, digest, path string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.joinTLS(digest), DisableKeepAlives: true},
		Timeout: c.opts.StartTimeout + 10*time.Second}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := hc.Do(hreq)
	if err != nil {
		var mm *caMismatchError
		if errors.As(err, &mm) {
			return &refusedError{model.ErrForbidden, fmt.Sprintf("%s at %s", mm.Error(), addr)}
		}
		return unavailable("join service "+addr, err)
	}
	defer hresp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(hresp.Body, 1<<20))
	if hresp.StatusCode >= 300 {
		var e errorResponse
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = hresp.Status
		}
		msg := fmt.Sprintf("%s refused: %s", addr, e.Message)
		switch hresp.StatusCode {
		case http.StatusForbidden:
			return &refusedError{model.ErrForbidden, msg}
		case http.StatusConflict:
			return &refusedError{model.ErrConflict, msg}
		case http.StatusBadRequest:
			return &refusedError{model.ErrInvalid, msg}
		}
		return unavailable("join service "+addr, errors.New(e.Message))
	}
	if resp == nil {
		return nil
	}
	return json.Unmarshal(b, resp)
}

// joinAddr is ADDR[:PORT] of Options.Join with the default join port.
func (c *Cluster) joinAddr() (string, error) {
	return hostPort(c.opts.Join, DefaultJoinPort)
}

// requestJoin asks the join service for a certificate, with the token (a
// new host) or with this member's certificate (a host that already joined
// once). It writes the PKI directory and loads the identity; a voter's
// answer also carries the CA key.
func (c *Cluster) requestJoin(ctx context.Context) (*joinResponse, error) {
	return c.requestJoinAs(ctx, true)
}

// requestJoinAs is requestJoin; byCert false ignores the certificate held
// (it was refused) and joins with the token.
func (c *Cluster) requestJoinAs(ctx context.Context, byCert bool) (*joinResponse, error) {
	o := c.opts
	addr, err := c.joinAddr()
	if err != nil {
		return nil, fmt.Errorf("cluster: join %q: %w", o.Join, err)
	}
	dir := pki.Dir(o.PKIDir)
	var digest, secret string
	c.id = nil
	if byCert && dir.HasNode() {
		if c.id, err = loadIdentity(dir); err != nil {
			return nil, err
		}
		if o.JoinToken != "" {
			c.log.Info("this host holds a cluster certificate already; the join token is not used")
		}
	} else {
		if o.JoinToken == "" {
			return nil, fmt.Errorf("cluster: join %s: %w", addr, &refusedError{model.ErrInvalid, "a join token is required (--join-token or --join-token-file; `vxnet node token` on a voting member prints it)"})
		}
		tok, err := pki.ParseToken(o.JoinToken)
		if err != nil {
			return nil, fmt.Errorf("cluster: join %s: %w", addr, &refusedError{model.ErrInvalid, err.Error()})
		}
		digest, secret = tok.CADigest, tok.Secret
	}
	var key []byte
	k, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	if c.id != nil {
		// Keep the key of the certificate we hold.
		if k, err = pki.ParseKeyFile(dir.NodeKeyPath()); err != nil {
			return nil, err
		}
	}
	if key, err = pki.KeyPEM(k); err != nil {
		return nil, err
	}
	csr, err := pki.CSR(k, o.NodeID)
	if err != nil {
		return nil, err
	}
	req := joinRequest{Secret: secret, NodeID: o.NodeID, Hostname: o.Hostname, Addr: o.AdvertiseAddr,
		ClientPort: o.ClientPort, PeerPort: o.PeerPort, CSR: csr}
	var resp joinResponse
	if err := c.joinCall(ctx, addr, digest, "/v1/join", req, &resp); err != nil {
		if errors.Is(err, model.ErrUnavailable) {
			return nil, err
		}
		if c.id != nil && errors.Is(err, model.ErrForbidden) && o.JoinToken != "" {
			// Removed from the cluster (its user is gone): a join token
			// given with it admits the host again, with a new key.
			c.log.Warn("this host's certificate was refused; joining again with the join token", "err", err)
			return c.requestJoinAs(ctx, false)
		}
		return nil, fmt.Errorf("cluster: join: %w", err)
	}
	ca, err := pki.ParseCA(resp.CACert, resp.CAKey)
	if err != nil {
		return nil, fmt.Errorf("cluster: join: %w", err)
	}
	if digest != "" && ca.Digest() != digest {
		return nil, fmt.Errorf("cluster: join: %w", &refusedError{model.ErrForbidden, (&caMismatchError{got: ca.Digest(), want: digest}).Error()})
	}
	files := []struct {
		name string
		data []byte
	}{{pki.CACertFile, resp.CACert}, {pki.NodeKeyFile, key}, {pki.NodeCertFile, resp.Cert}}
	if resp.CAKey != nil {
		files = append(files, struct {
			name string
			data []byte
		}{pki.CAKeyFile, resp.CAKey})
	}
	for _, f := range files {
		if err := dir.WriteFile(f.name, f.data); err != nil {
			return nil, err
		}
	}
	if c.id, err = loadIdentity(dir); err != nil {
		return nil, err
	}
	return &resp, nil
}

// voterJoinAddrs are the join service addresses to try for renewals and
// leaves: the one joined through first, then every voting member's.
func (c *Cluster) voterJoinAddrs(ctx context.Context) []string {
	var out []string
	if c.opts.Join != "" {
		if a, err := c.joinAddr(); err == nil {
			out = append(out, a)
		}
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.key("nodes")+"/", clientv3.WithPrefix())
	if err != nil {
		return out
	}
	for _, kv := range resp.Kvs {
		var r nodeRecord
		if json.Unmarshal(kv.Value, &r) != nil || r.JoinPort == 0 || !r.Addr.IsValid() || r.ID == c.opts.NodeID {
			continue
		}
		a := net.JoinHostPort(r.Addr.String(), strconv.Itoa(r.JoinPort))
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// callVoters makes a certificate-authenticated call to the first voting
// member's join service that answers.
func (c *Cluster) callVoters(ctx context.Context, path string, req, resp any) error {
	addrs := c.voterJoinAddrs(ctx)
	if len(addrs) == 0 {
		return unavailable(path, errors.New("no voting member's join service known"))
	}
	var err error
	for _, a := range addrs {
		if err = c.joinCall(ctx, a, "", path, req, resp); err == nil || !errors.Is(err, model.ErrUnavailable) {
			return err
		}
	}
	return err
}

// renewCert replaces this member's certificate before it expires: voting
// members sign it themselves, the others ask a voting member, showing the
// current certificate. The new one is used from the next TLS handshake on;
// the embedded etcd server reads its files on every handshake.
func (c *Cluster) renewCert(ctx context.Context) error {
	id := c.id
	if id.ca.Key != nil {
		if err := id.issueOwn(c.opts.NodeID, certIPs(c.opts.AdvertiseAddr), c.certValidity(ctx)); err != nil {
			return err
		}
	} else {
		k, err := pki.ParseKeyFile(id.dir.NodeKeyPath())
		if err != nil {
			return err
		}
		csr, err := pki.CSR(k, c.opts.NodeID)
		if err != nil {
			return err
		}
		var resp renewResponse
		if err := c.callVoters(ctx, "/v1/renew", renewRequest{CSR: csr}, &resp); err != nil {
			return err
		}
		if _, err := pki.ParseCert(resp.Cert); err != nil {
			return err
		}
		if err := id.dir.WriteFile(pki.NodeCertFile, resp.Cert); err != nil {
			return err
		}
		if err := id.reload(); err != nil {
			return err
		}
	}
	c.log.Info("renewed node certificate", "expires", id.expiry().UTC().Format(time.RFC3339))
	return nil
}

// certLoop renews the certificate once two thirds of its lifetime have
// passed, checking every twentieth of it (at most every ten minutes).
func (c *Cluster) certLoop(ctx context.Context) {
	for {
		leaf := c.id.nodeCert().Leaf
		life := max(pki.Lifetime(leaf), time.Second)
		renewAt := leaf.NotAfter.Add(-life / 3)
		wait := time.Until(renewAt)
		if step := min(life/20, 10*time.Minute); wait > step {
			wait = step
		}
		if err := sleepCtx(ctx, max(wait, 200*time.Millisecond)); err != nil {
			return
		}
		if time.Now().Before(renewAt) {
			continue
		}
		if err := c.renewCert(ctx); err != nil {
			c.log.Warn("renew node certificate", "err", err, "expires", leaf.NotAfter)
			if sleepCtx(ctx, min(life/20, time.Minute)) != nil {
				return
			}
		}
	}
}
