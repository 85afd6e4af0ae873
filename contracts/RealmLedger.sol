// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

/// @title RealmLedger: escrow, user-signed spending and pull-based earnings for one MTOR realm.
/// @notice Users deposit $9000 into escrow. Queries are paid off-chain from the
///         realm's journal; with every query the user signs (EIP-712) a
///         cumulative spending authorisation: "this realm may take up to
///         `total` from my deposit, in all". The settler later `redeem`s, per
///         payer, what the journal charged, never more than the payer signed:
///         one signature check and one storage write per payer, however many
///         queries. Each epoch, `settle` posts the Merkle root of every
///         worker's cumulative earnings, which must be backed by what was
///         collected; workers `claim` the difference to what they already
///         claimed, with a proof, when they choose. What is collected and not
///         owed to workers is the realm's fee (`withdrawFee`, owner only).
///
///         A user can always leave: `startExit`, then after `exitWindow`
///         seconds (the realm's last chance to redeem what it is owed)
///         `finishExit` pays the rest of the deposit back. Refund vouchers
///         signed by the voucher signer remain the fast path.
///
///         Keys are separate: the owner (two-step transfer) rotates the settler
///         and the voucher signer (each rotation is proposed by the owner and
///         accepted by the new key) and withdraws the fee; it cannot move a
///         deposit or an earning.
contract RealmLedger is ReentrancyGuard, EIP712, Ownable2Step {
    using SafeERC20 for IERC20;

    struct Account {
        uint128 deposit; // escrowed, not yet redeemed
        uint128 spent; // cumulative amount redeemed from this payer
    }

    /// One payer's redemption: take `charged - spent` so that the payer's
    /// cumulative spending becomes `charged`, which `authorised` (signed by the
    /// payer, EIP-2098 compact signature r/vs) must cover.
    struct Redemption {
        address payer;
        uint128 charged;
        uint128 authorised;
        bytes32 r;
        bytes32 vs;
    }

    /// Why a redemption was skipped (the others of its batch still go through).
    enum Skip {
        Stale, // nothing new: `charged` is not above what was already redeemed
        OverAuthorised, // `charged` is above the signed total
        InsufficientDeposit, // the deposit left does not cover it (the payer exited or refunded)
        BadSignature // the authorisation was not signed by the payer
    }

    bytes32 public constant SPEND_TYPEHASH = keccak256("Spend(address payer,uint256 total)");
    bytes32 private constant REFUND_TYPEHASH =
        keccak256("Refund(address user,uint256 amount,uint256 nonce,uint256 deadline)");

    IERC20 public immutable token;
    /// Seconds between `startExit` and `finishExit`: the settler's time to redeem.
    uint256 public immutable exitWindow;

    /// Posts redemptions and epochs. Shares a slot with `lastEpoch` (read together in `settle`).
    address public settler;
    /// The last settled epoch; the next `settle` must carry `lastEpoch + 1`.
    uint64 public lastEpoch;
    address public pendingSettler;
    /// Signs refund vouchers.
    address public voucherSigner;
    address public pendingVoucherSigner;

    /// Cumulative worker earnings under `earningsRoot` (every claim is bounded by it).
    uint128 public earningsTotal;
    /// `collected` as of the last settle: the fee can only come out of settled money.
    uint128 public settledCollected;
    /// Cumulative tokens taken from deposits by redemptions, plus covers.
    uint128 public collected;
    /// Cumulative fee withdrawn by the owner.
    uint128 public feePaid;

    /// Merkle root (sorted-pair keccak) of `(account, cumulative earnings)` leaves.
    bytes32 public earningsRoot;
    /// Hash of the realm journal's last row covered by the last settled epoch.
    bytes32 public journalHead;
    mapping(uint64 => bytes32) public receiptsRoot;
    mapping(address => Account) private _accounts;
    /// Cumulative earnings already paid out per account.
    mapping(address => uint256) public claimed;
    /// When a pending exit may finish (0: no exit pending).
    mapping(address => uint256) public exitAt;
    /// Refund voucher nonce per user; a voucher is good once.
    mapping(address => uint256) public refundNonce;

    error NotSettler(address caller);
    error NotPending(address caller);
    error ZeroAddress();
    error ZeroAmount();
    error LengthMismatch(uint256 users, uint256 amounts);
    error AmountTooLarge(uint256 amount);
    error BadEpoch(uint64 expected, uint64 got);
    error Unsorted(uint256 index);
    error ZeroEntry(uint256 index);
    error BadRoot();
    error EarningsDecreased(uint256 before, uint256 proposed);
    error Unbacked(uint256 earnings, uint256 available);
    error BadProof();
    error NothingToClaim(address account, uint256 claimed, uint256 cumulative);
    error InsufficientDeposit(address payer, uint256 available, uint256 needed);
    error InsufficientFee(uint256 available, uint256 needed);
    error ExitPending(uint256 finishAfter);
    error NoExit();
    error ExitNotReady(uint256 finishAfter);
    error VoucherExpired(uint256 deadline);
    error BadVoucher(address signer);

    event Deposited(address indexed user, address indexed from, uint256 amount, uint256 deposit);
    event Redeemed(uint256 payers, uint256 amount);
    event RedemptionSkipped(address indexed payer, Skip reason);
    event Settled(
        uint64 indexed epoch,
        bytes32 receiptsRoot,
        uint256 receipts,
        bytes32 earningsRoot,
        uint256 earningsTotal,
        bytes32 journalHead
    );
    event Claimed(address indexed account, uint256 amount, uint256 cumulative);
    event Covered(address indexed from, uint256 amount);
    event FeeWithdrawn(address indexed to, uint256 amount);
    event ExitStarted(address indexed user, uint256 finishAfter);
    event ExitCancelled(address indexed user);
    event Exited(address indexed user, uint256 amount);
    event Refunded(address indexed user, uint256 amount, uint256 nonce);
    event SettlerProposed(address indexed settler);
    event SettlerChanged(address indexed previous, address indexed settler);
    event VoucherSignerProposed(address indexed signer);
    event VoucherSignerChanged(address indexed previous, address indexed signer);

    constructor(IERC20 token_, address owner_, address settler_, address voucherSigner_, uint256 exitWindow_)
        EIP712("MTOR RealmLedger", "2")
        Ownable(owner_)
    {
        if (settler_ == address(0) || voucherSigner_ == address(0) || address(token_) == address(0)) {
            revert ZeroAddress();
        }
        token = token_;
        settler = settler_;
        voucherSigner = voucherSigner_;
        exitWindow = exitWindow_;
    }

    // --- deposits ---------------------------------------------------------------------

    /// @notice Escrow `amount` of the caller's tokens (approve first).
    function deposit(uint256 amount) external {
        _deposit(msg.sender, amount);
    }

    /// @notice Escrow `amount` of the caller's tokens for `user`
    ///         (a realm's welcome grant, or a friend paying).
    function depositFor(address user, uint256 amount) external {
        if (user == address(0)) revert ZeroAddress();
        _deposit(user, amount);
    }

    /// @notice Escrow `amounts[i]` for `users[i]`, all from the caller's tokens in one
    ///         transfer (a realm's welcome grants, batched).
    function depositForMany(address[] calldata users, uint256[] calldata amounts) external nonReentrant {
        if (users.length != amounts.length) revert LengthMismatch(users.length, amounts.length);
        uint256 total;
        for (uint256 i; i < users.length; ++i) {
            if (users[i] == address(0)) revert ZeroAddress();
            _credit(users[i], amounts[i]);
            total += amounts[i];
        }
        token.safeTransferFrom(msg.sender, address(this), total);
    }

    function _deposit(address user, uint256 amount) private nonReentrant {
        token.safeTransferFrom(msg.sender, address(this), amount);
        _credit(user, amount);
    }

    function _credit(address user, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        if (amount > type(uint128).max) revert AmountTooLarge(amount);
        Account storage acct = _accounts[user];
        uint256 newDeposit = uint256(acct.deposit) + amount;
        if (newDeposit > type(uint128).max) revert AmountTooLarge(newDeposit);
        acct.deposit = uint128(newDeposit);
        emit Deposited(user, msg.sender, amount, newDeposit);
    }

    // --- settlement -------------------------------------------------------------------

    modifier onlySettler() {
        if (msg.sender != settler) revert NotSettler(msg.sender);
        _;
    }

    /// @notice Take from each payer what the journal charged since the last
    ///         redemption, up to the payer's signed cumulative authorisation.
    ///         Payers must be strictly ascending (no duplicates, no address(0));
    ///         a payer that cannot be redeemed is skipped with `RedemptionSkipped`,
    ///         never blocking the rest. Cumulative amounts make a retried batch
    ///         harmless: what was already redeemed is `Stale`.
    function redeem(Redemption[] calldata batch) external onlySettler returns (uint256 total) {
        address previous;
        for (uint256 i; i < batch.length; ++i) {
            Redemption calldata e = batch[i];
            address payer = e.payer;
            if (payer <= previous) revert Unsorted(i);
            previous = payer;
            uint256 charged = e.charged;
            uint256 authorised = e.authorised;
            if (charged == 0 || authorised == 0) revert ZeroEntry(i);
            Account memory acct = _accounts[payer];
            if (charged <= acct.spent) {
                emit RedemptionSkipped(payer, Skip.Stale);
                continue;
            }
            if (charged > authorised) {
                emit RedemptionSkipped(payer, Skip.OverAuthorised);
                continue;
            }
            uint256 delta = charged - acct.spent;
            if (delta > acct.deposit) {
                emit RedemptionSkipped(payer, Skip.InsufficientDeposit);
                continue;
            }
            if (_signer(spendDigest(payer, authorised), e.r, e.vs) != payer) {
                emit RedemptionSkipped(payer, Skip.BadSignature);
                continue;
            }
            unchecked {
                // delta <= deposit, and charged fits uint128 by its type
                _accounts[payer] = Account(uint128(acct.deposit - delta), uint128(charged));
                total += delta;
            }
        }
        if (total != 0) {
            uint256 sum = uint256(collected) + total;
            if (sum > type(uint128).max) revert AmountTooLarge(sum);
            collected = uint128(sum);
        }
        emit Redeemed(batch.length, total);
    }

    /// The address that signed `digest` (EIP-2098 compact r/vs), or 0 for an invalid
    /// signature. The ecrecover precompile called on scratch memory: in a batch of
    /// thousands, OpenZeppelin's checks and allocations cost ~10% of a redemption,
    /// and a malleable `s` is harmless here (the payer is all that is checked).
    function _signer(bytes32 digest, bytes32 r, bytes32 vs) private view returns (address signer) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, digest)
            mstore(add(ptr, 0x20), add(shr(255, vs), 27))
            mstore(add(ptr, 0x40), r)
            mstore(add(ptr, 0x60), and(vs, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff))
            mstore(0x00, 0)
            pop(staticcall(gas(), 0x01, ptr, 0x80, 0x00, 0x20))
            signer := mload(0x00)
        }
    }

    /// @notice Post one epoch: its receipts root, the root of cumulative worker
    ///         earnings with the total it covers, and the journal's head hash.
    ///         The total may never shrink (earnings are cumulative) and must be
    ///         backed by what was collected and not paid out as fee.
    function settle(
        uint64 epoch,
        bytes32 receiptsRoot_,
        uint256 receipts,
        bytes32 earningsRoot_,
        uint256 earningsTotal_,
        bytes32 journalHead_
    ) external {
        address caller = settler;
        uint64 expected = lastEpoch + 1;
        if (msg.sender != caller) revert NotSettler(msg.sender);
        if (epoch != expected) revert BadEpoch(expected, epoch);
        if (journalHead_ == bytes32(0)) revert BadRoot();
        if ((receipts == 0) != (receiptsRoot_ == bytes32(0))) revert BadRoot();
        if ((earningsTotal_ == 0) != (earningsRoot_ == bytes32(0))) revert BadRoot();
        uint256 before = earningsTotal;
        if (earningsTotal_ < before) revert EarningsDecreased(before, earningsTotal_);
        uint256 got = collected;
        uint256 available = got - feePaid;
        if (earningsTotal_ > available) revert Unbacked(earningsTotal_, available);
        lastEpoch = epoch;
        earningsTotal = uint128(earningsTotal_); // <= available, which fits uint128
        settledCollected = uint128(got);
        receiptsRoot[epoch] = receiptsRoot_;
        earningsRoot = earningsRoot_;
        journalHead = journalHead_;
        emit Settled(epoch, receiptsRoot_, receipts, earningsRoot_, earningsTotal_, journalHead_);
    }

    /// @notice Pay `account` its earnings up to `cumulative`, the amount in its
    ///         leaf of the current earnings root. Anyone may send it; the tokens
    ///         always go to `account`. State changes before the transfer.
    function claim(address account, uint256 cumulative, bytes32[] calldata proof) external {
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulative))));
        if (!MerkleProof.verifyCalldata(proof, earningsRoot, leaf)) revert BadProof();
        uint256 done = claimed[account];
        if (cumulative <= done) revert NothingToClaim(account, done, cumulative);
        claimed[account] = cumulative;
        unchecked {
            uint256 amount = cumulative - done;
            token.safeTransfer(account, amount);
            emit Claimed(account, amount, cumulative);
        }
    }

    /// @notice Add backing from the caller's tokens: the realm covering a payer it
    ///         could not collect from, so that the workers are still paid.
    function cover(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 sum = uint256(collected) + amount;
        if (sum > type(uint128).max) revert AmountTooLarge(sum);
        collected = uint128(sum);
        emit Covered(msg.sender, amount);
    }

    /// @return what the owner may withdraw as fee: settled collections not owed to workers
    function feeAvailable() public view returns (uint256) {
        return uint256(settledCollected) - earningsTotal - feePaid;
    }

    function withdrawFee(address to, uint256 amount) external onlyOwner nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (to == address(0)) revert ZeroAddress();
        uint256 available = feeAvailable();
        if (amount > available) revert InsufficientFee(available, amount);
        feePaid += uint128(amount);
        token.safeTransfer(to, amount);
        emit FeeWithdrawn(to, amount);
    }

    // --- leaving ----------------------------------------------------------------------

    /// @notice Start leaving without the operator: after `exitWindow` seconds,
    ///         `finishExit` pays the caller's whole remaining deposit back.
    function startExit() external {
        uint256 at = exitAt[msg.sender];
        if (at != 0) revert ExitPending(at);
        at = block.timestamp + exitWindow;
        exitAt[msg.sender] = at;
        emit ExitStarted(msg.sender, at);
    }

    function cancelExit() external {
        if (exitAt[msg.sender] == 0) revert NoExit();
        delete exitAt[msg.sender];
        emit ExitCancelled(msg.sender);
    }

    function finishExit() external nonReentrant {
        uint256 at = exitAt[msg.sender];
        if (at == 0) revert NoExit();
        if (block.timestamp < at) revert ExitNotReady(at);
        delete exitAt[msg.sender];
        Account storage acct = _accounts[msg.sender];
        uint256 amount = acct.deposit;
        acct.deposit = 0;
        if (amount != 0) token.safeTransfer(msg.sender, amount);
        emit Exited(msg.sender, amount);
    }

    /// @notice Take `amount` of unspent deposit back with a voucher the voucher signer signed.
    function refund(uint256 amount, uint256 deadline, bytes calldata signature) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (block.timestamp > deadline) revert VoucherExpired(deadline);
        uint256 nonce = refundNonce[msg.sender];
        bytes32 digest =
            _hashTypedDataV4(keccak256(abi.encode(REFUND_TYPEHASH, msg.sender, amount, nonce, deadline)));
        address signer = ECDSA.recover(digest, signature);
        if (signer != voucherSigner) revert BadVoucher(signer);
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

    // --- keys -------------------------------------------------------------------------

    function proposeSettler(address next) external onlyOwner {
        if (next == address(0)) revert ZeroAddress();
        pendingSettler = next;
        emit SettlerProposed(next);
    }

    function acceptSettler() external {
        if (msg.sender != pendingSettler) revert NotPending(msg.sender);
        emit SettlerChanged(settler, msg.sender);
        settler = msg.sender;
        delete pendingSettler;
    }

    function proposeVoucherSigner(address next) external onlyOwner {
        if (next == address(0)) revert ZeroAddress();
        pendingVoucherSigner = next;
        emit VoucherSignerProposed(next);
    }

    function acceptVoucherSigner() external {
        if (msg.sender != pendingVoucherSigner) revert NotPending(msg.sender);
        emit VoucherSignerChanged(voucherSigner, msg.sender);
        voucherSigner = msg.sender;
        delete pendingVoucherSigner;
    }

    // --- views ------------------------------------------------------------------------

    /// @return escrowed deposit not yet redeemed
    /// @return spent cumulative amount redeemed from this payer
    function accountOf(address who) external view returns (uint256 escrowed, uint256 spent) {
        Account storage acct = _accounts[who];
        return (acct.deposit, acct.spent);
    }

    /// @notice Deposits, redeemed totals and claimed earnings of many addresses in one call
    ///         (the settler plans a batch with it, the audit checks a realm with it).
    function accountsOf(address[] calldata who)
        external
        view
        returns (uint256[] memory deposits, uint256[] memory spent, uint256[] memory claims)
    {
        deposits = new uint256[](who.length);
        spent = new uint256[](who.length);
        claims = new uint256[](who.length);
        for (uint256 i; i < who.length; ++i) {
            Account storage acct = _accounts[who[i]];
            deposits[i] = acct.deposit;
            spent[i] = acct.spent;
            claims[i] = claimed[who[i]];
        }
    }

    /// @notice The EIP-712 digest a payer signs to authorise `total` in all.
    function spendDigest(address payer, uint256 total) public view returns (bytes32) {
        bytes32 typeHash = SPEND_TYPEHASH;
        bytes32 structHash;
        assembly ("memory-safe") {
            // scratch space past the free memory pointer: a batch loop allocates nothing
            let ptr := mload(0x40)
            mstore(ptr, typeHash)
            mstore(add(ptr, 0x20), payer)
            mstore(add(ptr, 0x40), total)
            structHash := keccak256(ptr, 0x60)
        }
        return _hashTypedDataV4(structHash);
    }

    /// @notice Whether `leaf` is one of `epoch`'s receipts.
    function verifyReceipt(uint64 epoch, bytes32 leaf, bytes32[] calldata proof) external view returns (bool) {
        bytes32 root = receiptsRoot[epoch];
        return root != bytes32(0) && MerkleProof.verifyCalldata(proof, root, leaf);
    }

    /// @notice The EIP-712 domain separator authorisations and vouchers are signed under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
