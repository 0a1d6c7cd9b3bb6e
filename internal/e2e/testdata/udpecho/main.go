// udpecho answers every UDP datagram on a port with "TAG:PAYLOAD". Tests
// build it static (CGO_ENABLED=0) and run it in busybox containers, whose
// nc has no UDP mode.
//
//	udpecho PORT TAG
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: udpecho PORT TAG")
		os.Exit(2)
	}
	pc, err := net.ListenPacket("udp", ":"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pc.WriteTo(append([]byte(os.Args[2]+":"), buf[:n]...), from)
	}
}
