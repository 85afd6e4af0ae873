// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title RealmLedger: escrow and per-epoch settlement for one MTOR realm.
/// @notice Users deposit $9000 into escrow. Queries are paid off-chain from the
///         realm's journal; once per epoch the operator posts one `settle` that
///         debits each payer's deposit by what they spent, credits each worker
///         what they earned plus the realm fee to the operator, and records the
///         Merkle root of the epoch's query receipts. Gas grows with the number
///         of participants in an epoch, never with the number of queries.
///
///         Settlement entries are packed into one word each,
///         `(amount << 160) | account`, so each costs one calldata word, and
///         an account's deposit and earnings share one storage slot.
///
///         Unspent deposit comes back through a refund voucher the operator
///         signs (EIP-712) after reserving the amount in its journal, so a
///         refund can never race a query the journal has already paid for.
contract RealmLedger is ReentrancyGuard, EIP712 {
    using SafeERC20 for IERC20;

    struct Account {
        uint128 deposit; // escrowed, not yet spent
        uint128 earned; // credited by settlements, not yet withdrawn
    }

    bytes32 private constant REFUND_TYPEHASH =
        keccak256("Refund(address user,uint256 amount,uint256 nonce,uint256 deadline)");
    uint256 private constant ADDRESS_MASK = (1 << 160) - 1;

    IERC20 public immutable token;
    /// The realm: posts settlements, signs refund vouchers, receives the fee.
    address public immutable operator;

    /// The last settled epoch; the next `settle` must carry `lastEpoch + 1`.
    uint64 public lastEpoch;
    mapping(address => Account) private _accounts;
    mapping(uint64 => bytes32) public receiptsRoot;
    /// Next refund voucher nonce per user; a voucher is good once.
    mapping(address => uint256) public refundNonce;

    error NotOperator(address caller);
    error ZeroAmount();
    error BadEpoch(uint64 expected, uint64 got);
    error Unbalanced(uint256 debits, uint256 credits, uint256 fee);
    error InsufficientDeposit(address payer, uint256 available, uint256 needed);
    error InsufficientEarnings(address worker, uint256 available, uint256 needed);
    error VoucherExpired(uint256 deadline);
    error BadVoucher(address signer);
    error AmountTooLarge(uint256 amount);

    event Deposited(address indexed user, address indexed from, uint256 amount, uint256 deposit);
    event Settled(
        uint64 indexed epoch, bytes32 receiptsRoot, uint256 receipts, uint256 debited, uint256 credited, uint256 fee
    );
    // Per-entry events carry no epoch: the Settled event of the same transaction names it,
    // and a topic fewer saves 375 gas per payee.
    event Debited(address indexed payer, uint256 amount);
    event Credited(address indexed worker, uint256 amount);
    event Withdrawn(address indexed worker, uint256 amount);
    event Refunded(address indexed user, uint256 amount, uint256 nonce);

    constructor(IERC20 token_, address operator_) EIP712("MTOR RealmLedger", "1") {
        token = token_;
        operator = operator_;
    }

    /// @notice Escrow `amount` of the caller's tokens (approve first).
    function deposit(uint256 amount) external {
        _deposit(msg.sender, amount);
    }

    /// @notice Escrow `amount` of the caller's tokens for `user`
    ///         (a realm's welcome grant, or a friend paying).
    function depositFor(address user, uint256 amount) external {
        _deposit(user, amount);
    }

    function _deposit(address user, uint256 amount) private nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (amount > type(uint128).max) revert AmountTooLarge(amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
        Account storage acct = _accounts[user];
        uint256 newDeposit = uint256(acct.deposit) + amount;
        if (newDeposit > type(uint128).max) revert AmountTooLarge(newDeposit);
        acct.deposit = uint128(newDeposit);
        emit Deposited(user, msg.sender, amount, newDeposit);
    }

    /// @notice Post one epoch. `debits` and `credits` hold `(amount << 160) | account`.
    /// @param epoch must be `lastEpoch + 1`
    /// @param root Merkle root (sorted-pair keccak) of the epoch's receipts
    /// @param receipts number of receipts under `root`
    /// @param fee the realm's fee, credited to the operator
    function settle(
        uint64 epoch,
        bytes32 root,
        uint256 receipts,
        uint256[] calldata debits,
        uint256[] calldata credits,
        uint256 fee
    ) external {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        uint64 expected = lastEpoch + 1;
        if (epoch != expected) revert BadEpoch(expected, epoch);
        lastEpoch = epoch;
        receiptsRoot[epoch] = root;

        uint256 debited = _debitAll(debits);
        uint256 credited = _creditAll(credits);
        if (debited != credited + fee) revert Unbalanced(debited, credited, fee);
        if (fee != 0) _credit(operator, fee);
        emit Settled(epoch, root, receipts, debited, credited, fee);
    }

    function _debitAll(uint256[] calldata debits) private returns (uint256 debited) {
        for (uint256 i; i < debits.length; ++i) {
            uint256 entry = debits[i];
            address payer = address(uint160(entry & ADDRESS_MASK));
            uint256 amount = entry >> 160;
            Account storage acct = _accounts[payer];
            uint256 available = acct.deposit;
            if (available < amount) revert InsufficientDeposit(payer, available, amount);
            unchecked {
                acct.deposit = uint128(available - amount);
            }
            debited += amount;
            emit Debited(payer, amount);
        }
    }

    function _creditAll(uint256[] calldata credits) private returns (uint256 credited) {
        for (uint256 i; i < credits.length; ++i) {
            uint256 entry = credits[i];
            address worker = address(uint160(entry & ADDRESS_MASK));
            uint256 amount = entry >> 160;
            _credit(worker, amount);
            credited += amount;
            emit Credited(worker, amount);
        }
    }

    function _credit(address worker, uint256 amount) private {
        Account storage acct = _accounts[worker];
        // Earnings are bounded by deposits, which are bounded by uint128 above;
        // the checked add still refuses a crafted overflow.
        uint256 earned = uint256(acct.earned) + amount;
        if (earned > type(uint128).max) revert AmountTooLarge(earned);
        acct.earned = uint128(earned);
    }

    /// @notice Pay `amount` of the caller's settled earnings out to the caller.
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Account storage acct = _accounts[msg.sender];
        uint256 available = acct.earned;
        if (available < amount) revert InsufficientEarnings(msg.sender, available, amount);
        unchecked {
            acct.earned = uint128(available - amount);
        }
        token.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Take `amount` of unspent deposit back with a voucher the operator signed.
    function refund(uint256 amount, uint256 deadline, bytes calldata signature) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (block.timestamp > deadline) revert VoucherExpired(deadline);
        uint256 nonce = refundNonce[msg.sender];
        bytes32 digest =
            _hashTypedDataV4(keccak256(abi.encode(REFUND_TYPEHASH, msg.sender, amount, nonce, deadline)));
        address signer = ECDSA.recover(digest, signature);
        if (signer != operator) revert BadVoucher(signer);
        Account storage acct = _accounts[msg.sender];
        uint256 available = acct.deposit;
        if (available < amount) revert InsufficientDeposit(msg.sender, available, amount);
        refundNonce[msg.sender] = nonce + 1;
        unchecked {
            acct.deposit = uint128(available - amount);
        }
        token.safeTransfer(msg.sender, amount);
        emit Refunded(msg.sender, amount, nonce);
    }

    /// @return escrowed deposit not yet spent
    /// @return earned settled earnings not yet withdrawn
    function accountOf(address who) external view returns (uint256 escrowed, uint256 earned) {
        Account storage acct = _accounts[who];
        return (acct.deposit, acct.earned);
    }

    /// @notice Whether `leaf` is one of `epoch`'s receipts.
    function verifyReceipt(uint64 epoch, bytes32 leaf, bytes32[] calldata proof) external view returns (bool) {
        bytes32 root = receiptsRoot[epoch];
        return root != bytes32(0) && MerkleProof.verifyCalldata(proof, root, leaf);
    }

    /// @notice The EIP-712 domain separator vouchers are signed under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
