const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture, time } = require("@nomicfoundation/hardhat-toolbox/network-helpers");
const {
  domainOf,
  signSpend,
  redemption,
  sortByPayer,
  receiptLeaf,
  earningsTree,
  merkleRoot,
  merkleProof,
  signRefund,
} = require("./helpers");

const ONE = 10n ** 18n;
const CAP = 2n ** 200n;
const WINDOW = 3600n;
const HEAD = ethers.keccak256(ethers.toUtf8Bytes("journal head"));
const RECEIPTS = ethers.keccak256(ethers.toUtf8Bytes("epoch receipts"));
const Skip = { Stale: 0, OverAuthorised: 1, InsufficientDeposit: 2, BadSignature: 3 };

describe("RealmLedger", function () {
  async function deploy() {
    const [owner, settler, voucher, alice, bob, carol, worker1, worker2, mallory] = await ethers.getSigners();
    const token = await (await ethers.getContractFactory("NineThousand")).deploy(owner.address, 1000n * ONE, CAP);
    const ledger = await (await ethers.getContractFactory("RealmLedger")).deploy(
      await token.getAddress(),
      owner.address,
      settler.address,
      voucher.address,
      WINDOW,
    );
    for (const user of [alice, bob, carol, mallory]) {
      await token.connect(user).faucet();
      await token.connect(user).approve(await ledger.getAddress(), ethers.MaxUint256);
    }
    return { owner, settler, voucher, alice, bob, carol, worker1, worker2, mallory, token, ledger };
  }

  async function funded() {
    const f = await deploy();
    await f.ledger.connect(f.alice).deposit(100n * ONE);
    await f.ledger.connect(f.bob).deposit(50n * ONE);
    await f.ledger.connect(f.carol).deposit(20n * ONE);
    return f;
  }

  // alice spent 10, bob 5 (both signed exactly that); worker1 earned 9, worker2 4.5; the fee is 1.5
  async function settledOnce() {
    const f = await funded();
    const { ledger, settler, alice, bob, worker1, worker2 } = f;
    await ledger
      .connect(settler)
      .redeem(sortByPayer([await redemption(alice, ledger, 10n * ONE), await redemption(bob, ledger, 5n * ONE)]));
    const tree = earningsTree({ [worker1.address]: 9n * ONE, [worker2.address]: 45n * ONE / 10n });
    await ledger.connect(settler).settle(1, RECEIPTS, 3, tree.root, tree.total, HEAD);
    return { ...f, tree };
  }

  describe("deployment", function () {
    it("records the token, the three keys and the exit window, and starts before epoch 1", async function () {
      const { ledger, token, owner, settler, voucher } = await loadFixture(deploy);
      expect(await ledger.token()).to.equal(await token.getAddress());
      expect(await ledger.owner()).to.equal(owner.address);
      expect(await ledger.settler()).to.equal(settler.address);
      expect(await ledger.voucherSigner()).to.equal(voucher.address);
      expect(await ledger.exitWindow()).to.equal(WINDOW);
      expect(await ledger.lastEpoch()).to.equal(0n);
      expect(await ledger.earningsRoot()).to.equal(ethers.ZeroHash);
    });

    it("exposes the EIP-712 domain and the digest a payer signs", async function () {
      const { ledger, alice } = await loadFixture(deploy);
      const domain = await domainOf(ledger);
      expect(await ledger.domainSeparator()).to.equal(ethers.TypedDataEncoder.hashDomain(domain));
      const types = { Spend: [{ name: "payer", type: "address" }, { name: "total", type: "uint256" }] };
      expect(await ledger.spendDigest(alice.address, 7n)).to.equal(
        ethers.TypedDataEncoder.hash(domain, types, { payer: alice.address, total: 7n }),
      );
    });

    it("refuses address(0) for any key or the token", async function () {
      const { token, owner, settler, voucher } = await loadFixture(deploy);
      const Factory = await ethers.getContractFactory("RealmLedger");
      const tokenAddr = await token.getAddress();
      const Z = ethers.ZeroAddress;
      const ledger = await Factory.deploy(tokenAddr, owner.address, settler.address, voucher.address, WINDOW);
      await expect(Factory.deploy(tokenAddr, owner.address, Z, voucher.address, WINDOW)).to.be.revertedWithCustomError(
        ledger,
        "ZeroAddress",
      );
      await expect(Factory.deploy(tokenAddr, owner.address, settler.address, Z, WINDOW)).to.be.revertedWithCustomError(
        ledger,
        "ZeroAddress",
      );
      await expect(Factory.deploy(Z, owner.address, settler.address, voucher.address, WINDOW)).to.be.revertedWithCustomError(
        ledger,
        "ZeroAddress",
      );
      await expect(Factory.deploy(tokenAddr, Z, settler.address, voucher.address, WINDOW)).to.be.revertedWithCustomError(
        ledger,
        "OwnableInvalidOwner",
      );
    });
  });

  describe("deposit", function () {
    it("escrows the caller's tokens and emits Deposited with the new deposit", async function () {
      const { ledger, token, alice } = await loadFixture(deploy);
      await expect(ledger.connect(alice).deposit(30n * ONE))
        .to.emit(ledger, "Deposited")
        .withArgs(alice.address, alice.address, 30n * ONE, 30n * ONE);
      await expect(ledger.connect(alice).deposit(12n)).to.changeTokenBalances(token, [alice, ledger], [-12n, 12n]);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([30n * ONE + 12n, 0n]);
    });

    it("depositFor credits another user from the caller's tokens, never address(0)", async function () {
      const { ledger, token, alice, worker1 } = await loadFixture(deploy);
      await expect(ledger.connect(alice).depositFor(worker1.address, 7n * ONE))
        .to.emit(ledger, "Deposited")
        .withArgs(worker1.address, alice.address, 7n * ONE, 7n * ONE);
      expect(await token.balanceOf(alice.address)).to.equal(993n * ONE);
      expect(await ledger.accountOf(worker1.address)).to.deep.equal([7n * ONE, 0n]);
      await expect(ledger.connect(alice).depositFor(ethers.ZeroAddress, 1n)).to.be.revertedWithCustomError(
        ledger,
        "ZeroAddress",
      );
    });

    it("depositForMany escrows for many users in one transfer, all or nothing", async function () {
      const { ledger, token, alice, bob, carol, worker1 } = await loadFixture(deploy);
      const tx = ledger.connect(alice).depositForMany([bob.address, carol.address, worker1.address], [1n, 2n, 3n]);
      await expect(tx).to.changeTokenBalances(token, [alice, ledger], [-6n, 6n]);
      await expect(tx).to.emit(ledger, "Deposited").withArgs(carol.address, alice.address, 2n, 2n);
      expect(await ledger.accountOf(worker1.address)).to.deep.equal([3n, 0n]);
      await expect(ledger.connect(alice).depositForMany([bob.address], [1n, 2n]))
        .to.be.revertedWithCustomError(ledger, "LengthMismatch")
        .withArgs(1, 2);
      await expect(
        ledger.connect(alice).depositForMany([bob.address, ethers.ZeroAddress], [1n, 1n]),
      ).to.be.revertedWithCustomError(ledger, "ZeroAddress");
      await expect(ledger.connect(alice).depositForMany([bob.address, carol.address], [1n, 0n])).to.be
        .revertedWithCustomError(ledger, "ZeroAmount");
      expect(await ledger.accountOf(bob.address)).to.deep.equal([1n, 0n]);
    });

    it("refuses a zero deposit, and one without allowance or tokens", async function () {
      const { ledger, token, alice, worker1 } = await loadFixture(deploy);
      await expect(ledger.connect(alice).deposit(0)).to.be.revertedWithCustomError(ledger, "ZeroAmount");
      await expect(ledger.connect(worker1).deposit(1n)).to.be.revertedWithCustomError(
        token,
        "ERC20InsufficientAllowance",
      );
      await expect(ledger.connect(alice).deposit(1001n * ONE)).to.be.revertedWithCustomError(
        token,
        "ERC20InsufficientBalance",
      );
    });

    it("refuses amounts that do not fit the packed account", async function () {
      const { ledger, token, worker1 } = await loadFixture(deploy);
      const max = 2n ** 128n - 1n;
      await token.mint(worker1.address, 2n ** 129n);
      await token.connect(worker1).approve(await ledger.getAddress(), ethers.MaxUint256);
      await expect(ledger.connect(worker1).deposit(max + 1n))
        .to.be.revertedWithCustomError(ledger, "AmountTooLarge")
        .withArgs(max + 1n);
      await ledger.connect(worker1).deposit(max);
      await expect(ledger.connect(worker1).deposit(1n))
        .to.be.revertedWithCustomError(ledger, "AmountTooLarge")
        .withArgs(max + 1n);
    });
  });

  describe("redeem: every debit is signed by its payer", function () {
    it("takes what was charged, cumulatively: a second redemption takes only the difference", async function () {
      const { ledger, token, settler, alice } = await loadFixture(funded);
      const first = await redemption(alice, ledger, 10n * ONE, 12n * ONE);
      await expect(ledger.connect(settler).redeem([first]))
        .to.emit(ledger, "Redeemed")
        .withArgs(1, 10n * ONE);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([90n * ONE, 10n * ONE]);
      expect(await ledger.collected()).to.equal(10n * ONE);
      const second = await redemption(alice, ledger, 15n * ONE, 20n * ONE);
      await expect(ledger.connect(settler).redeem([second])).to.changeTokenBalances(token, [ledger], [0n]);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([85n * ONE, 15n * ONE]);
      expect(await ledger.collected()).to.equal(15n * ONE);
    });

    it("attack: the operator debits a payer without the payer's signature", async function () {
      const { ledger, settler, owner, mallory, alice } = await loadFixture(funded);
      for (const forger of [settler, owner, mallory]) {
        const forged = await redemption(alice, ledger, 100n * ONE, 100n * ONE, { signer: forger });
        await expect(ledger.connect(settler).redeem([forged]))
          .to.emit(ledger, "RedemptionSkipped")
          .withArgs(alice.address, Skip.BadSignature);
      }
      // garbage in r/vs is a bad signature too, not a revert that blocks the batch
      const garbage = { payer: alice.address, charged: ONE, authorised: ONE, r: ethers.ZeroHash, vs: ethers.ZeroHash };
      await expect(ledger.connect(settler).redeem([garbage]))
        .to.emit(ledger, "RedemptionSkipped")
        .withArgs(alice.address, Skip.BadSignature);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([100n * ONE, 0n]);
      expect(await ledger.collected()).to.equal(0n);
    });

    it("attack: the operator takes more than the payer signed, or inflates a signed total", async function () {
      const { ledger, settler, alice } = await loadFixture(funded);
      const signed = await signSpend(alice, ledger, 10n * ONE);
      const over = { payer: alice.address, charged: 11n * ONE, authorised: 10n * ONE, ...signed };
      await expect(ledger.connect(settler).redeem([over]))
        .to.emit(ledger, "RedemptionSkipped")
        .withArgs(alice.address, Skip.OverAuthorised);
      // claiming the signature was for more does not recover to the payer
      const inflated = { payer: alice.address, charged: 50n * ONE, authorised: 50n * ONE, ...signed };
      await expect(ledger.connect(settler).redeem([inflated]))
        .to.emit(ledger, "RedemptionSkipped")
        .withArgs(alice.address, Skip.BadSignature);
      // an old authorisation replayed later cannot take anything again: it is cumulative
      await ledger.connect(settler).redeem([{ payer: alice.address, charged: 10n * ONE, authorised: 10n * ONE, ...signed }]);
      await expect(
        ledger.connect(settler).redeem([{ payer: alice.address, charged: 10n * ONE, authorised: 10n * ONE, ...signed }]),
      )
        .to.emit(ledger, "RedemptionSkipped")
        .withArgs(alice.address, Skip.Stale);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([90n * ONE, 10n * ONE]);
    });

    it("attack: an authorisation signed for another realm's ledger is not valid here", async function () {
      const { ledger, token, owner, settler, voucher, alice } = await loadFixture(funded);
      const other = await (await ethers.getContractFactory("RealmLedger")).deploy(
        await token.getAddress(),
        owner.address,
        settler.address,
        voucher.address,
        WINDOW,
      );
      const elsewhere = await redemption(alice, other, 5n * ONE);
      await expect(ledger.connect(settler).redeem([elsewhere]))
        .to.emit(ledger, "RedemptionSkipped")
        .withArgs(alice.address, Skip.BadSignature);
    });

    it("one unpayable redemption cannot block the other payers of its batch", async function () {
      const { ledger, settler, alice, bob, carol } = await loadFixture(funded);
      const batch = sortByPayer([
        await redemption(alice, ledger, 10n * ONE),
        await redemption(bob, ledger, 51n * ONE), // bob has 50
        await redemption(carol, ledger, 2n * ONE),
      ]);
      const tx = ledger.connect(settler).redeem(batch);
      await expect(tx).to.emit(ledger, "RedemptionSkipped").withArgs(bob.address, Skip.InsufficientDeposit);
      await expect(tx).to.emit(ledger, "Redeemed").withArgs(3, 12n * ONE);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([90n * ONE, 10n * ONE]);
      expect(await ledger.accountOf(bob.address)).to.deep.equal([50n * ONE, 0n]);
      expect(await ledger.accountOf(carol.address)).to.deep.equal([18n * ONE, 2n * ONE]);
    });

    it("a retried batch (its answer was lost) takes nothing twice", async function () {
      const { ledger, settler, alice, bob } = await loadFixture(funded);
      const batch = sortByPayer([await redemption(alice, ledger, 3n * ONE), await redemption(bob, ledger, 4n * ONE)]);
      await ledger.connect(settler).redeem(batch);
      await expect(ledger.connect(settler).redeem(batch)).to.emit(ledger, "Redeemed").withArgs(2, 0n);
      expect(await ledger.collected()).to.equal(7n * ONE);
    });

    it("attack: unsorted, duplicate, address(0) and zero entries are refused", async function () {
      const { ledger, settler, alice, bob } = await loadFixture(funded);
      const [lo, hi] = sortByPayer([await redemption(alice, ledger, ONE), await redemption(bob, ledger, ONE)]);
      await expect(ledger.connect(settler).redeem([hi, lo]))
        .to.be.revertedWithCustomError(ledger, "Unsorted")
        .withArgs(1);
      await expect(ledger.connect(settler).redeem([lo, lo]))
        .to.be.revertedWithCustomError(ledger, "Unsorted")
        .withArgs(1);
      const nobody = { ...lo, payer: ethers.ZeroAddress };
      await expect(ledger.connect(settler).redeem([nobody]))
        .to.be.revertedWithCustomError(ledger, "Unsorted")
        .withArgs(0);
      await expect(ledger.connect(settler).redeem([{ ...lo, charged: 0n }]))
        .to.be.revertedWithCustomError(ledger, "ZeroEntry")
        .withArgs(0);
      await expect(ledger.connect(settler).redeem([lo, { ...hi, authorised: 0n }]))
        .to.be.revertedWithCustomError(ledger, "ZeroEntry")
        .withArgs(1);
      expect(await ledger.collected()).to.equal(0n);
    });

    it("only the settler redeems: not the owner, not a payer", async function () {
      const { ledger, owner, alice } = await loadFixture(funded);
      const entry = await redemption(alice, ledger, ONE);
      for (const who of [owner, alice]) {
        await expect(ledger.connect(who).redeem([entry]))
          .to.be.revertedWithCustomError(ledger, "NotSettler")
          .withArgs(who.address);
      }
    });

    it("costs at most 12k gas per returning payer (one signature check, one storage write)", async function () {
      const { ledger, token, owner, settler } = await loadFixture(deploy);
      const n = 60;
      const payers = [];
      for (let i = 0; i < n; i++) payers.push(ethers.Wallet.createRandom().connect(ethers.provider));
      await token.mint(owner.address, BigInt(n) * ONE);
      await token.approve(await ledger.getAddress(), ethers.MaxUint256);
      for (const p of payers) await ledger.depositFor(p.address, ONE);
      const round = async (charged, count) => {
        const batch = [];
        for (const p of payers.slice(0, count)) batch.push(await redemption(p, ledger, charged));
        const tx = await ledger.connect(settler).redeem(sortByPayer(batch));
        return (await tx.wait()).gasUsed;
      };
      await round(1000n, n); // first redemptions out of the way
      const one = await round(2000n, 1);
      const many = await round(3000n, n);
      const perPayer = (many - one) / BigInt(n - 1);
      expect(perPayer).to.be.lessThanOrEqual(12_000n);
    });
  });

  describe("settle: the cumulative earnings root", function () {
    it("posts the receipts root, the earnings root and total, and the journal head", async function () {
      const { ledger, settler, alice, worker1 } = await loadFixture(funded);
      await ledger.connect(settler).redeem([await redemption(alice, ledger, 10n * ONE)]);
      const tree = earningsTree({ [worker1.address]: 9n * ONE });
      await expect(ledger.connect(settler).settle(1, RECEIPTS, 4, tree.root, tree.total, HEAD))
        .to.emit(ledger, "Settled")
        .withArgs(1, RECEIPTS, 4, tree.root, 9n * ONE, HEAD);
      expect(await ledger.lastEpoch()).to.equal(1n);
      expect(await ledger.receiptsRoot(1)).to.equal(RECEIPTS);
      expect(await ledger.earningsRoot()).to.equal(tree.root);
      expect(await ledger.earningsTotal()).to.equal(9n * ONE);
      expect(await ledger.journalHead()).to.equal(HEAD);
      expect(await ledger.feeAvailable()).to.equal(ONE);
    });

    it("attack: earnings that were not collected cannot be posted", async function () {
      const { ledger, settler, alice, worker1 } = await loadFixture(funded);
      await ledger.connect(settler).redeem([await redemption(alice, ledger, 10n * ONE)]);
      const tree = earningsTree({ [worker1.address]: 10n * ONE + 1n });
      await expect(ledger.connect(settler).settle(1, RECEIPTS, 1, tree.root, tree.total, HEAD))
        .to.be.revertedWithCustomError(ledger, "Unbacked")
        .withArgs(10n * ONE + 1n, 10n * ONE);
    });

    it("attack: cumulative earnings never shrink", async function () {
      const { ledger, settler, worker1 } = await loadFixture(settledOnce);
      const less = earningsTree({ [worker1.address]: ONE });
      await expect(ledger.connect(settler).settle(2, RECEIPTS, 1, less.root, less.total, HEAD))
        .to.be.revertedWithCustomError(ledger, "EarningsDecreased")
        .withArgs(135n * ONE / 10n, ONE);
    });

    it("refuses a replayed, a skipped or a zero epoch, a zero head and roots that do not match their counts", async function () {
      const { ledger, settler, tree } = await loadFixture(settledOnce);
      const args = [RECEIPTS, 1, tree.root, tree.total, HEAD];
      for (const [epoch, expected] of [[1, 2], [3, 2], [0, 2]]) {
        await expect(ledger.connect(settler).settle(epoch, ...args))
          .to.be.revertedWithCustomError(ledger, "BadEpoch")
          .withArgs(expected, epoch);
      }
      await expect(ledger.connect(settler).settle(2, RECEIPTS, 1, tree.root, tree.total, ethers.ZeroHash)).to.be
        .revertedWithCustomError(ledger, "BadRoot");
      await expect(ledger.connect(settler).settle(2, ethers.ZeroHash, 1, tree.root, tree.total, HEAD)).to.be
        .revertedWithCustomError(ledger, "BadRoot");
      await expect(ledger.connect(settler).settle(2, RECEIPTS, 0, tree.root, tree.total, HEAD)).to.be
        .revertedWithCustomError(ledger, "BadRoot");
      await expect(ledger.connect(settler).settle(2, RECEIPTS, 1, ethers.ZeroHash, tree.total, HEAD)).to.be
        .revertedWithCustomError(ledger, "BadRoot");
      // an epoch with nothing new is fine (the same root again)
      await ledger.connect(settler).settle(2, ethers.ZeroHash, 0, tree.root, tree.total, HEAD);
      expect(await ledger.lastEpoch()).to.equal(2n);
    });

    it("refuses anyone but the settler, the owner included", async function () {
      const { ledger, owner, mallory } = await loadFixture(funded);
      for (const who of [owner, mallory]) {
        await expect(ledger.connect(who).settle(1, RECEIPTS, 1, ethers.ZeroHash, 0, HEAD))
          .to.be.revertedWithCustomError(ledger, "NotSettler")
          .withArgs(who.address);
      }
    });

    it("costs the same, under 80k gas, whether 1 or 10,000 workers earned", async function () {
      const { ledger, settler, alice } = await loadFixture(funded);
      await ledger.connect(settler).redeem([await redemption(alice, ledger, 100n * ONE)]);
      const first = earningsTree({ [alice.address]: 1n });
      await ledger.connect(settler).settle(1, RECEIPTS, 1, first.root, first.total, HEAD); // first writes
      const gas = [];
      let epoch = 2;
      for (const workers of [1, 10_000]) {
        const earnings = {};
        for (let i = 0; i < workers; i++) earnings[ethers.toBeHex(0xbeef0000n + BigInt(i + epoch * 100_000), 20)] = BigInt(epoch);
        const tree = earningsTree(earnings);
        const tx = await ledger.connect(settler).settle(epoch, RECEIPTS, workers, tree.root, tree.total, HEAD);
        gas.push((await tx.wait()).gasUsed);
        epoch++;
      }
      expect(gas[0]).to.be.lessThanOrEqual(80_000n);
      expect(gas[1]).to.be.lessThanOrEqual(80_000n);
      const spread = gas[1] > gas[0] ? gas[1] - gas[0] : gas[0] - gas[1];
      expect(spread).to.be.lessThanOrEqual(500n); // calldata bytes of the numbers only
    });
  });

  describe("claim: workers pull their earnings", function () {
    it("pays a worker its cumulative earnings minus what it claimed, with a proof", async function () {
      const { ledger, token, settler, alice, worker1, worker2, tree } = await loadFixture(settledOnce);
      await expect(ledger.connect(worker1).claim(worker1.address, 9n * ONE, tree.proof(worker1.address)))
        .to.emit(ledger, "Claimed")
        .withArgs(worker1.address, 9n * ONE, 9n * ONE);
      expect(await token.balanceOf(worker1.address)).to.equal(9n * ONE);
      // epoch 2: worker1 earns 1.8 more
      await ledger.connect(settler).redeem([await redemption(alice, ledger, 12n * ONE)]);
      const next = earningsTree({ [worker1.address]: 108n * ONE / 10n, [worker2.address]: 45n * ONE / 10n });
      await ledger.connect(settler).settle(2, RECEIPTS, 1, next.root, next.total, HEAD);
      await expect(ledger.connect(worker1).claim(worker1.address, 108n * ONE / 10n, next.proof(worker1.address)))
        .to.changeTokenBalances(token, [worker1, ledger], [18n * ONE / 10n, -18n * ONE / 10n]);
      expect(await ledger.claimed(worker1.address)).to.equal(108n * ONE / 10n);
    });

    it("attack: claiming twice, more than earned, with another's proof or an old root pays nothing", async function () {
      const { ledger, settler, alice, worker1, worker2, mallory, tree } = await loadFixture(settledOnce);
      await ledger.claim(worker1.address, 9n * ONE, tree.proof(worker1.address));
      expect(await ledger.accountsOf([worker1.address, worker2.address])).to.deep.equal([
        [0n, 0n],
        [0n, 0n],
        [9n * ONE, 0n],
      ]);
      await expect(ledger.claim(worker1.address, 9n * ONE, tree.proof(worker1.address)))
        .to.be.revertedWithCustomError(ledger, "NothingToClaim")
        .withArgs(worker1.address, 9n * ONE, 9n * ONE);
      await expect(ledger.claim(worker2.address, 5n * ONE, tree.proof(worker2.address))).to.be.revertedWithCustomError(
        ledger,
        "BadProof",
      );
      await expect(ledger.claim(mallory.address, 9n * ONE, tree.proof(worker1.address))).to.be.revertedWithCustomError(
        ledger,
        "BadProof",
      );
      await ledger.connect(settler).redeem([await redemption(alice, ledger, 11n * ONE)]);
      const next = earningsTree({ [worker1.address]: 9n * ONE, [worker2.address]: 55n * ONE / 10n });
      await ledger.connect(settler).settle(2, RECEIPTS, 1, next.root, next.total, HEAD);
      await expect(ledger.claim(worker2.address, 45n * ONE / 10n, tree.proof(worker2.address))).to.be
        .revertedWithCustomError(ledger, "BadProof");
    });

    it("anyone may send a claim, and the tokens still go to the worker", async function () {
      const { ledger, token, mallory, worker2, tree } = await loadFixture(settledOnce);
      await expect(
        ledger.connect(mallory).claim(worker2.address, 45n * ONE / 10n, tree.proof(worker2.address)),
      ).to.changeTokenBalances(token, [worker2, mallory], [45n * ONE / 10n, 0n]);
    });

    it("costs at most 70k gas for a returning worker in a tree of 1,000", async function () {
      const { ledger, token, settler, alice, worker1 } = await loadFixture(funded);
      const earnings = {};
      for (let i = 0; i < 999; i++) earnings[ethers.toBeHex(0xfeed0000n + BigInt(i), 20)] = 1n;
      earnings[worker1.address] = ONE;
      await ledger.connect(settler).redeem([await redemption(alice, ledger, 3n * ONE)]);
      let tree = earningsTree(earnings);
      await ledger.connect(settler).settle(1, RECEIPTS, 1000, tree.root, tree.total, HEAD);
      await ledger.claim(worker1.address, ONE, tree.proof(worker1.address)); // its first claim
      earnings[worker1.address] = 2n * ONE;
      tree = earningsTree(earnings);
      await ledger.connect(settler).settle(2, RECEIPTS, 1000, tree.root, tree.total, HEAD);
      const tx = await ledger.connect(worker1).claim(worker1.address, 2n * ONE, tree.proof(worker1.address));
      expect((await tx.wait()).gasUsed).to.be.lessThanOrEqual(70_000n);
      expect(await token.balanceOf(worker1.address)).to.equal(2n * ONE);
    });
  });

  describe("the fee", function () {
    it("the owner withdraws what was collected and settled but is not owed to workers", async function () {
      const { ledger, token, owner, mallory } = await loadFixture(settledOnce);
      expect(await ledger.feeAvailable()).to.equal(15n * ONE / 10n);
      await expect(ledger.connect(owner).withdrawFee(mallory.address, ONE))
        .to.emit(ledger, "FeeWithdrawn")
        .withArgs(mallory.address, ONE);
      expect(await token.balanceOf(mallory.address)).to.equal(1001n * ONE);
      await expect(ledger.connect(owner).withdrawFee(owner.address, ONE))
        .to.be.revertedWithCustomError(ledger, "InsufficientFee")
        .withArgs(ONE / 2n, ONE);
    });

    it("attack: the owner cannot take money collected for an epoch not settled yet", async function () {
      const { ledger, owner, settler, carol } = await loadFixture(settledOnce);
      await ledger.connect(settler).redeem([await redemption(carol, ledger, 20n * ONE)]);
      expect(await ledger.feeAvailable()).to.equal(15n * ONE / 10n);
      await expect(ledger.connect(owner).withdrawFee(owner.address, 2n * ONE)).to.be.revertedWithCustomError(
        ledger,
        "InsufficientFee",
      );
    });

    it("only the owner withdraws the fee; the settler cannot", async function () {
      const { ledger, settler } = await loadFixture(settledOnce);
      await expect(ledger.connect(settler).withdrawFee(settler.address, 1n))
        .to.be.revertedWithCustomError(ledger, "OwnableUnauthorizedAccount")
        .withArgs(settler.address);
    });

    it("a cover backs the earnings of a payer that could not be collected", async function () {
      const { ledger, token, owner, settler, alice, worker1 } = await loadFixture(funded);
      // alice could not be redeemed (say she exited); her worker is still owed 9
      const tree = earningsTree({ [worker1.address]: 9n * ONE });
      await expect(ledger.connect(settler).settle(1, RECEIPTS, 1, tree.root, tree.total, HEAD)).to.be
        .revertedWithCustomError(ledger, "Unbacked");
      await token.mint(owner.address, 9n * ONE);
      await token.approve(await ledger.getAddress(), 9n * ONE);
      await expect(ledger.connect(owner).cover(9n * ONE)).to.emit(ledger, "Covered").withArgs(owner.address, 9n * ONE);
      await ledger.connect(settler).settle(1, RECEIPTS, 1, tree.root, tree.total, HEAD);
      await ledger.claim(worker1.address, 9n * ONE, tree.proof(worker1.address));
      expect(await token.balanceOf(worker1.address)).to.equal(9n * ONE);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([100n * ONE, 0n]);
    });
  });

  describe("exit: leaving without the operator", function () {
    it("starts an exit, lets the settler redeem in the window, then pays the rest back", async function () {
      const { ledger, token, settler, alice } = await loadFixture(funded);
      const tx = await ledger.connect(alice).startExit();
      const finishAfter = BigInt(await time.latest()) + WINDOW;
      await expect(tx).to.emit(ledger, "ExitStarted").withArgs(alice.address, finishAfter);
      await expect(ledger.connect(alice).finishExit())
        .to.be.revertedWithCustomError(ledger, "ExitNotReady")
        .withArgs(finishAfter);
      // the realm's last chance: what alice signed for is still redeemable
      await ledger.connect(settler).redeem([await redemption(alice, ledger, 7n * ONE)]);
      await time.increaseTo(finishAfter);
      await expect(ledger.connect(alice).finishExit())
        .to.emit(ledger, "Exited")
        .withArgs(alice.address, 93n * ONE);
      expect(await token.balanceOf(alice.address)).to.equal(993n * ONE);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([0n, 7n * ONE]);
      expect(await ledger.exitAt(alice.address)).to.equal(0n);
      // charges the realm redeems too late are skipped, and block nobody
      await expect(ledger.connect(settler).redeem([await redemption(alice, ledger, 8n * ONE)]))
        .to.emit(ledger, "RedemptionSkipped")
        .withArgs(alice.address, Skip.InsufficientDeposit);
    });

    it("refuses a second start, a finish without a start, and can be cancelled", async function () {
      const { ledger, alice } = await loadFixture(funded);
      await expect(ledger.connect(alice).finishExit()).to.be.revertedWithCustomError(ledger, "NoExit");
      await expect(ledger.connect(alice).cancelExit()).to.be.revertedWithCustomError(ledger, "NoExit");
      await ledger.connect(alice).startExit();
      await expect(ledger.connect(alice).startExit()).to.be.revertedWithCustomError(ledger, "ExitPending");
      await expect(ledger.connect(alice).cancelExit()).to.emit(ledger, "ExitCancelled").withArgs(alice.address);
      expect(await ledger.exitAt(alice.address)).to.equal(0n);
    });
  });

  describe("keys: separate, rotated in two steps", function () {
    it("rotates the settler: proposed by the owner, accepted by the new key; the old one stops", async function () {
      const { ledger, owner, settler, alice, mallory, worker2 } = await loadFixture(funded);
      await expect(ledger.connect(settler).proposeSettler(mallory.address))
        .to.be.revertedWithCustomError(ledger, "OwnableUnauthorizedAccount")
        .withArgs(settler.address);
      await expect(ledger.connect(owner).proposeSettler(ethers.ZeroAddress)).to.be.revertedWithCustomError(
        ledger,
        "ZeroAddress",
      );
      await expect(ledger.connect(owner).proposeSettler(worker2.address))
        .to.emit(ledger, "SettlerProposed")
        .withArgs(worker2.address);
      expect(await ledger.settler()).to.equal(settler.address); // nothing changes before the accept
      await expect(ledger.connect(mallory).acceptSettler())
        .to.be.revertedWithCustomError(ledger, "NotPending")
        .withArgs(mallory.address);
      await expect(ledger.connect(worker2).acceptSettler())
        .to.emit(ledger, "SettlerChanged")
        .withArgs(settler.address, worker2.address);
      const entry = await redemption(alice, ledger, ONE);
      await expect(ledger.connect(settler).redeem([entry])).to.be.revertedWithCustomError(ledger, "NotSettler");
      await ledger.connect(worker2).redeem([entry]);
      expect(await ledger.pendingSettler()).to.equal(ethers.ZeroAddress);
    });

    it("rotates the voucher signer: vouchers of the old key stop working", async function () {
      const { ledger, owner, voucher, alice, worker2 } = await loadFixture(funded);
      await ledger.connect(owner).proposeVoucherSigner(worker2.address);
      await expect(ledger.connect(voucher).acceptVoucherSigner()).to.be.revertedWithCustomError(ledger, "NotPending");
      await expect(ledger.connect(worker2).acceptVoucherSigner())
        .to.emit(ledger, "VoucherSignerChanged")
        .withArgs(voucher.address, worker2.address);
      const deadline = (await time.latest()) + 3600;
      const old = await signRefund(voucher, ledger, alice.address, ONE, 0, deadline);
      await expect(ledger.connect(alice).refund(ONE, deadline, old))
        .to.be.revertedWithCustomError(ledger, "BadVoucher")
        .withArgs(voucher.address);
      const fresh = await signRefund(worker2, ledger, alice.address, ONE, 0, deadline);
      await ledger.connect(alice).refund(ONE, deadline, fresh);
    });

    it("attack: a single-step ownership transfer cannot hand the realm to a wrong address", async function () {
      const { ledger, owner, mallory, worker1 } = await loadFixture(deploy);
      await ledger.connect(owner).transferOwnership(worker1.address);
      expect(await ledger.owner()).to.equal(owner.address);
      expect(await ledger.pendingOwner()).to.equal(worker1.address);
      await expect(ledger.connect(mallory).acceptOwnership()).to.be.revertedWithCustomError(
        ledger,
        "OwnableUnauthorizedAccount",
      );
      await ledger.connect(worker1).acceptOwnership();
      expect(await ledger.owner()).to.equal(worker1.address);
    });
  });

  describe("refund vouchers", function () {
    async function voucherFor(f, user, amount, { signer = f.voucher, nonce, deadline } = {}) {
      const n = nonce ?? (await f.ledger.refundNonce(user.address));
      const d = deadline ?? (await time.latest()) + 3600;
      return { deadline: d, sig: await signRefund(signer, f.ledger, user.address, amount, n, d) };
    }

    it("returns unspent deposit for a voucher of the voucher signer, once", async function () {
      const f = await loadFixture(settledOnce);
      const { ledger, token, alice } = f;
      const v = await voucherFor(f, alice, 40n * ONE);
      await expect(ledger.connect(alice).refund(40n * ONE, v.deadline, v.sig))
        .to.emit(ledger, "Refunded")
        .withArgs(alice.address, 40n * ONE, 0);
      expect(await token.balanceOf(alice.address)).to.equal(940n * ONE);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([50n * ONE, 10n * ONE]);
      await expect(ledger.connect(alice).refund(40n * ONE, v.deadline, v.sig)).to.be.revertedWithCustomError(
        ledger,
        "BadVoucher",
      );
    });

    it("refuses a voucher of the settler or the owner, an altered, stolen or expired one", async function () {
      const f = await loadFixture(funded);
      const { ledger, alice, mallory, settler, owner } = f;
      for (const signer of [settler, owner, mallory]) {
        const forged = await voucherFor(f, alice, 10n * ONE, { signer });
        await expect(ledger.connect(alice).refund(10n * ONE, forged.deadline, forged.sig))
          .to.be.revertedWithCustomError(ledger, "BadVoucher")
          .withArgs(signer.address);
      }
      const good = await voucherFor(f, alice, 10n * ONE);
      await expect(ledger.connect(alice).refund(11n * ONE, good.deadline, good.sig)).to.be.revertedWithCustomError(
        ledger,
        "BadVoucher",
      );
      await expect(ledger.connect(mallory).refund(10n * ONE, good.deadline, good.sig)).to.be.revertedWithCustomError(
        ledger,
        "BadVoucher",
      );
      await time.increaseTo(good.deadline + 1);
      await expect(ledger.connect(alice).refund(10n * ONE, good.deadline, good.sig))
        .to.be.revertedWithCustomError(ledger, "VoucherExpired")
        .withArgs(good.deadline);
      // an expired voucher does not lock the user out: the next one (same nonce) works
      const next = await voucherFor(f, alice, 10n * ONE);
      await ledger.connect(alice).refund(10n * ONE, next.deadline, next.sig);
      expect(await ledger.accountOf(alice.address)).to.deep.equal([90n * ONE, 0n]);
    });

    it("refuses a voucher for more than the deposit left", async function () {
      const f = await loadFixture(settledOnce);
      const v = await voucherFor(f, f.bob, 46n * ONE);
      await expect(f.ledger.connect(f.bob).refund(46n * ONE, v.deadline, v.sig))
        .to.be.revertedWithCustomError(f.ledger, "InsufficientDeposit")
        .withArgs(f.bob.address, 45n * ONE, 46n * ONE);
    });
  });

  describe("receipts", function () {
    it("proves each receipt of an epoch against its root, and nothing else", async function () {
      const { ledger, settler, alice, bob, worker1 } = await loadFixture(funded);
      const receipts = [1, 2, 3, 4, 5].map((i) => ({
        guid: `q-${i}`,
        payer: i % 2 ? alice.address : bob.address,
        worker: worker1.address,
        amount: BigInt(i) * 1000n,
        fee: BigInt(i) * 100n,
        time: 1_700_000_000 + i,
      }));
      const leaves = receipts.map(receiptLeaf);
      const root = merkleRoot(leaves);
      await ledger.connect(settler).settle(1, root, receipts.length, ethers.ZeroHash, 0, HEAD);
      for (let i = 0; i < leaves.length; i++) {
        expect(await ledger.verifyReceipt(1, leaves[i], merkleProof(leaves, i))).to.equal(true);
      }
      const forged = receiptLeaf({ ...receipts[0], amount: 1n });
      expect(await ledger.verifyReceipt(1, forged, merkleProof(leaves, 0))).to.equal(false);
      expect(await ledger.verifyReceipt(2, leaves[0], merkleProof(leaves, 0))).to.equal(false);
    });
  });

  describe("reentrancy", function () {
    async function hostile() {
      const [owner, settler, voucher, alice] = await ethers.getSigners();
      const token = await (await ethers.getContractFactory("ReentrantToken")).deploy();
      const ledger = await (await ethers.getContractFactory("RealmLedger")).deploy(
        await token.getAddress(),
        owner.address,
        settler.address,
        voucher.address,
        0,
      );
      const tokenAddr = await token.getAddress();
      const ledgerAddr = await ledger.getAddress();
      // the hostile token is itself a user of the ledger: it deposits 100 ...
      await token.aim(ledgerAddr);
      await token.mint(tokenAddr, 1000n);
      await token.approveFor(ledgerAddr, ethers.MaxUint256);
      await token.mint(alice.address, 1000n);
      await token.connect(alice).approve(ledgerAddr, ethers.MaxUint256);
      await ledger.connect(alice).deposit(500n);
      await token.kick(ledger.interface.encodeFunctionData("deposit", [100n]));
      // ... and earns 100 from alice's queries
      await ledger.connect(settler).redeem([await redemption(alice, ledger, 100n)]);
      const tree = earningsTree({ [tokenAddr]: 100n });
      await ledger.connect(settler).settle(1, RECEIPTS, 1, tree.root, tree.total, HEAD);
      return { owner, settler, voucher, alice, token, ledger, tokenAddr, ledgerAddr, tree };
    }

    it("a token that re-enters claim during the payout gets nothing twice", async function () {
      const { token, ledger, tokenAddr, ledgerAddr, tree } = await loadFixture(hostile);
      const call = ledger.interface.encodeFunctionData("claim", [tokenAddr, 100n, tree.proof(tokenAddr)]);
      await token.arm(call);
      await expect(token.kick(call)).to.be.revertedWithCustomError(ledger, "NothingToClaim");
      expect(await ledger.claimed(tokenAddr)).to.equal(0n);
      await token.disarm();
      await token.kick(call);
      expect(await token.balanceOf(ledgerAddr)).to.equal(500n);
    });

    it("a token that re-enters finishExit during the payout gets nothing twice", async function () {
      const { token, ledger, tokenAddr, ledgerAddr } = await loadFixture(hostile);
      await token.kick(ledger.interface.encodeFunctionData("startExit"));
      const call = ledger.interface.encodeFunctionData("finishExit");
      await token.arm(call);
      await expect(token.kick(call)).to.be.revertedWithCustomError(ledger, "ReentrancyGuardReentrantCall");
      expect(await ledger.accountOf(tokenAddr)).to.deep.equal([100n, 0n]);
      expect(await token.balanceOf(ledgerAddr)).to.equal(600n);
    });

    it("a token that re-enters refund with the same voucher gets nothing twice", async function () {
      const { voucher, token, ledger, tokenAddr } = await loadFixture(hostile);
      const deadline = (await time.latest()) + 3600;
      const sig = await signRefund(voucher, ledger, tokenAddr, 100n, 0, deadline);
      const call = ledger.interface.encodeFunctionData("refund", [100n, deadline, sig]);
      await token.arm(call);
      await expect(token.kick(call)).to.be.revertedWithCustomError(ledger, "ReentrancyGuardReentrantCall");
      expect(await ledger.refundNonce(tokenAddr)).to.equal(0n);
      await token.disarm();
      await token.kick(call);
      await expect(token.kick(call)).to.be.revertedWithCustomError(ledger, "BadVoucher");
      expect(await ledger.accountOf(tokenAddr)).to.deep.equal([0n, 0n]);
    });

    it("a token that re-enters deposit cannot double-count a transfer", async function () {
      const { token, ledger, tokenAddr } = await loadFixture(hostile);
      const call = ledger.interface.encodeFunctionData("deposit", [10n]);
      await token.arm(call);
      await expect(token.kick(call)).to.be.revertedWithCustomError(ledger, "ReentrancyGuardReentrantCall");
      expect(await ledger.accountOf(tokenAddr)).to.deep.equal([100n, 0n]);
    });
  });
});
