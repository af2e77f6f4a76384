package socktop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The certificate and key files in Options.TLSDir.
const (
	certFile = "cert.pem"
	keyFile  = "key.pem"
)

// loadOrCreateCert loads the certificate in dir, or creates a self-signed
// one (ECDSA P-256, ten years) with its key readable by the owner only. It
// returns the certificate's SHA-256 fingerprint for clients to pin.
func loadOrCreateCert(dir string) (tls.Certificate, string, error) {
	cp, kp := filepath.Join(dir, certFile), filepath.Join(dir, keyFile)
	cert, err := tls.LoadX509KeyPair(cp, kp)
	if errors.Is(err, os.ErrNotExist) {
		if err := createCert(dir, cp, kp); err != nil {
			return tls.Certificate{}, "", err
		}
		cert, err = tls.LoadX509KeyPair(cp, kp)
	}
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("socktop TLS certificate in %s: %w (remove %s and %s to make a new one)", dir, err, cp, kp)
	}
	return cert, Fingerprint(cert.Certificate[0]), nil
}

// Fingerprint formats the SHA-256 of a DER certificate as colon-separated
// hex pairs.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

func createCert(dir, cp, kp string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("socktop TLS directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("socktop TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mb-agent socktop " + host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("socktop TLS certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(kp, "PRIVATE KEY", kder); err != nil {
		return err
	}
	return writePEM(cp, "CERTIFICATE", der)
}

// writePEM writes one PEM block to a new file of mode 0600.
func writePEM(path, typ string, der []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("socktop TLS: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("socktop TLS: writing %s: %w", path, err)
	}
	return f.Close()
}
