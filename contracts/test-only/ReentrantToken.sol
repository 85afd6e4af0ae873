// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// Test only: a hostile ERC-20 that is also a ledger account. `kick` makes it
/// call the ledger (withdraw, refund, deposit); every transfer of the token
/// then calls the ledger again with `reentry`, to prove that a hostile token
/// cannot make the ledger pay twice.
contract ReentrantToken is ERC20 {
    address public victim;
    bytes public reentry;
    bool public armed;

    constructor() ERC20("Reentrant", "RE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function aim(address victim_) external {
        victim = victim_;
    }

    function arm(bytes calldata reentry_) external {
        reentry = reentry_;
        armed = true;
    }

    function disarm() external {
        armed = false;
    }

    function approveFor(address spender, uint256 amount) external {
        _approve(address(this), spender, amount);
    }

    function kick(bytes calldata data) external {
        _call(data);
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (!armed) return;
        armed = false; // one re-entry is enough to prove the point
        _call(reentry);
    }

    function _call(bytes memory data) private {
        (bool ok, bytes memory ret) = victim.call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}
