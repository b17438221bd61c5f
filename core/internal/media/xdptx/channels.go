package xdptx

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TXQueues is how many TX queues interface name has in use, by the
// ethtool channels ioctl (TX plus combined channels), asked on a socket of
// the calling thread's network namespace; an error when the driver does
// not say (ethtool's EOPNOTSUPP). An XSK bound to a queue at or past this
// number sends nothing, silently: the bind is refused only past the RX
// queues, which may be more.
func TXQueues(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ch := ethtoolChannels{cmd: unix.ETHTOOL_GCHANNELS}
	var ifr ifreqData
	if len(name) >= len(ifr.name) {
		return 0, unix.EINVAL
	}
	copy(ifr.name[:], name)
	ifr.data = unsafe.Pointer(&ch)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ch)
	if e != 0 {
		return 0, e
	}
	return int(ch.tx + ch.combined), nil
}

// ethtoolChannels is struct ethtool_channels.
type ethtoolChannels struct {
	cmd                                 uint32
	maxRX, maxTX, maxOther, maxCombined uint32
	rx, tx, other, combined             uint32
}

// ifreqData is struct ifreq with its ifr_data member.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}
