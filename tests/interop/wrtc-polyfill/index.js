// Local replacement for the npm package `webrtc-polyfill` (wired in through
// `overrides` in ../package.json).
//
// The real package wraps `node-datachannel`, whose install script downloads a
// prebuilt binary from outside the npm registry, which fails on offline
// machines. `@roamhq/wrtc` ships its native binary inside its npm package
// (`@roamhq/wrtc-linux-x64` etc.), so we re-export its classes instead.
//
// Only the three names that `@thaunknown/simple-peer` imports are needed.
// `@roamhq/wrtc` is a dependency of the parent package (tests/interop); it is
// resolved from there because Node follows the node_modules symlink to this
// directory's real path.
import wrtc from '@roamhq/wrtc'

export const RTCPeerConnection = wrtc.RTCPeerConnection
export const RTCSessionDescription = wrtc.RTCSessionDescription
export const RTCIceCandidate = wrtc.RTCIceCandidate

export default { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate }
