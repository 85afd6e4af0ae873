const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture } = require("@nomicfoundation/hardhat-toolbox/network-helpers");

const FAUCET = ethers.parseUnits("1000", 18);
const CAP = ethers.parseUnits("1000000", 18);

describe("NineThousand", function () {
  async function deploy() {
    const [owner, alice, bob] = await ethers.getSigners();
    const Token = await ethers.getContractFactory("NineThousand");
    const devToken = await Token.deploy(owner.address, FAUCET, CAP);
    const prodToken = await Token.deploy(owner.address, 0, CAP);
    return { owner, alice, bob, devToken, prodToken };
  }

  it("is the $9000 ERC-20: Nine Thousand, 9000, 18 decimals, no supply at birth, a fixed cap", async function () {
    const { devToken, owner } = await loadFixture(deploy);
    expect(await devToken.name()).to.equal("Nine Thousand");
    expect(await devToken.symbol()).to.equal("9000");
    expect(await devToken.decimals()).to.equal(18n);
    expect(await devToken.totalSupply()).to.equal(0n);
    expect(await devToken.cap()).to.equal(CAP);
    expect(await devToken.owner()).to.equal(owner.address);
  });

  it("lets the owner mint and nobody else", async function () {
    const { devToken, alice, bob } = await loadFixture(deploy);
    await expect(devToken.mint(alice.address, 5n))
      .to.emit(devToken, "Transfer")
      .withArgs(ethers.ZeroAddress, alice.address, 5n);
    expect(await devToken.balanceOf(alice.address)).to.equal(5n);
    await expect(devToken.connect(alice).mint(bob.address, 1n))
      .to.be.revertedWithCustomError(devToken, "OwnableUnauthorizedAccount")
      .withArgs(alice.address);
  });

  it("attack: the minter cannot mint beyond the cap, the faucet neither", async function () {
    const { devToken, prodToken, alice } = await loadFixture(deploy);
    await prodToken.mint(alice.address, CAP);
    await expect(prodToken.mint(alice.address, 1n))
      .to.be.revertedWithCustomError(prodToken, "ERC20ExceededCap")
      .withArgs(CAP + 1n, CAP);
    await devToken.mint(alice.address, CAP - FAUCET + 1n);
    await expect(devToken.connect(alice).faucet()).to.be.revertedWithCustomError(devToken, "ERC20ExceededCap");
  });

  it("moves ownership in two steps: the new owner must accept", async function () {
    const { devToken, owner, alice, bob } = await loadFixture(deploy);
    await devToken.transferOwnership(alice.address);
    expect(await devToken.owner()).to.equal(owner.address);
    await expect(devToken.connect(bob).acceptOwnership())
      .to.be.revertedWithCustomError(devToken, "OwnableUnauthorizedAccount")
      .withArgs(bob.address);
    await devToken.connect(alice).acceptOwnership();
    expect(await devToken.owner()).to.equal(alice.address);
    await expect(devToken.mint(bob.address, 1n)).to.be.revertedWithCustomError(devToken, "OwnableUnauthorizedAccount");
  });

  it("gives faucet tokens on a dev deployment", async function () {
    const { devToken, alice } = await loadFixture(deploy);
    expect(await devToken.faucetAmount()).to.equal(FAUCET);
    await expect(devToken.connect(alice).faucet()).to.emit(devToken, "Faucet").withArgs(alice.address, FAUCET);
    await devToken.connect(alice).faucet();
    expect(await devToken.balanceOf(alice.address)).to.equal(2n * FAUCET);
  });

  it("has no faucet on a production deployment", async function () {
    const { prodToken, alice } = await loadFixture(deploy);
    await expect(prodToken.connect(alice).faucet()).to.be.revertedWithCustomError(prodToken, "FaucetDisabled");
    expect(await prodToken.totalSupply()).to.equal(0n);
  });

  it("transfers and approves like any ERC-20", async function () {
    const { devToken, alice, bob } = await loadFixture(deploy);
    await devToken.connect(alice).faucet();
    await expect(devToken.connect(alice).transfer(bob.address, 7n)).to.changeTokenBalances(
      devToken,
      [alice, bob],
      [-7n, 7n],
    );
    await devToken.connect(alice).approve(bob.address, 3n);
    await devToken.connect(bob).transferFrom(alice.address, bob.address, 3n);
    expect(await devToken.balanceOf(bob.address)).to.equal(10n);
    await expect(devToken.connect(bob).transferFrom(alice.address, bob.address, 1n)).to.be.revertedWithCustomError(
      devToken,
      "ERC20InsufficientAllowance",
    );
  });
});
