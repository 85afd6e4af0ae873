// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Capped} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Capped.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

/// @title $9000 ("Nine Thousand"), the MTOR realm token.
/// @notice The owner mints, never beyond the supply cap fixed at deployment.
///         Ownership moves in two steps (the new owner accepts), so a typo
///         cannot hand the minter role to nobody. A dev-chain deployment sets
///         a faucet amount so that anyone can get test tokens (within the cap);
///         a production deployment passes 0, which turns the faucet off for good.
contract NineThousand is ERC20Capped, Ownable2Step {
    /// Tokens one `faucet()` call mints; 0 means there is no faucet.
    uint256 public immutable faucetAmount;

    error FaucetDisabled();

    event Faucet(address indexed to, uint256 amount);

    constructor(address initialOwner, uint256 faucetAmount_, uint256 supplyCap)
        ERC20("Nine Thousand", "9000")
        ERC20Capped(supplyCap)
        Ownable(initialOwner)
    {
        faucetAmount = faucetAmount_;
    }

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }

    /// @notice Dev chains only: mint `faucetAmount` test tokens to the caller.
    function faucet() external {
        uint256 amount = faucetAmount;
        if (amount == 0) revert FaucetDisabled();
        _mint(msg.sender, amount);
        emit Faucet(msg.sender, amount);
    }
}
