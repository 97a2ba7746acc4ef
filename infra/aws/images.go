package aws

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ebs"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"kubeup.dev/kubeup/infra/cloud"
)

// ImagesTag is the tag of everything an images stack owns; its value is
// the region. (Published images outlive clusters: they carry no
// cloud.ClusterTag.)
const ImagesTag = "kubeup.dev/images"

// ImageSpec is one image for ImageProgram.
type ImageSpec struct {
	cloud.Image
	// Adopt is an AMI already published for this digest (found with
	// LookupArgs) that the stack uses instead of importing the image.
	// Never adopt an AMI this stack created itself (its output
	// "image/<role>/sha256" names the digest it holds): the program would
	// no longer declare it, and the update would deregister it.
	Adopt string
}

// ImageProgram is the inline program of a region's images stack. It
// uploads each image not adopted to a private bucket, imports it as an
// encrypted snapshot (VM Import) and registers an AMI. Outputs, per image:
// "image/<role>" (the AMI id) and "image/<role>/sha256" (its digest).
func ImageProgram(region string, images []ImageSpec) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		out, err := publish(ctx, region, images)
		if err != nil {
			return err
		}
		export(ctx, out)
		return nil
	}
}

// LookupArgs find the AMI this account published for img: its name and
// digest tag, the newest if several. Invoke them with a provider for the
// images' region.
func LookupArgs(img cloud.Image) *ec2.LookupAmiArgs {
	newest := true
	return &ec2.LookupAmiArgs{
		Owners: []string{"self"},
		Filters: []ec2.GetAmiFilter{
			{Name: "name", Values: []string{img.ImageName()}},
			{Name: "tag:" + cloud.ImageTag, Values: []string{img.SHA256}},
		},
		MostRecent: &newest,
	}
}

func checkImages(region string, images []ImageSpec) error {
	if region == "" {
		return fmt.Errorf("images: no region")
	}
	roles := map[string]bool{}
	for _, img := range images {
		switch {
		case img.Role == "":
			return fmt.Errorf("image %s: no role", img.Path)
		case roles[img.Role]:
			return fmt.Errorf("image %s: two images", img.Role)
		case img.SHA256 == "":
			return fmt.Errorf("image %s: no digest", img.Role)
		case img.Adopt != "" && !strings.HasPrefix(img.Adopt, "ami-"):
			return fmt.Errorf("image %s: %q is not an AMI id", img.Role, img.Adopt)
		case img.Adopt == "" && img.Path == "":
			return fmt.Errorf("image %s: no file", img.Role)
		}
		roles[img.Role] = true
	}
	return nil
}

// publish declares the images stack's resources and returns its outputs.
func publish(ctx *pulumi.Context, region string, images []ImageSpec) (pulumi.Map, error) {
	if err := checkImages(region, images); err != nil {
		return nil, err
	}
	out := pulumi.Map{}
	var todo []ImageSpec
	for _, img := range images {
		out["image/"+img.Role+"/sha256"] = pulumi.String(img.SHA256)
		if img.Adopt != "" {
			out["image/"+img.Role] = pulumi.String(img.Adopt)
		} else {
			todo = append(todo, img)
		}
	}
	if len(todo) == 0 {
		return out, nil
	}
	tags := func(extra map[string]string) pulumi.StringMap {
		t := map[string]string{ImagesTag: region}
		for k, v := range extra {
			t[k] = v
		}
		return pulumi.ToStringMap(t)
	}
	prov, err := aws.NewProvider(ctx, "aws", &aws.ProviderArgs{Region: pulumi.String(region)})
	if err != nil {
		return nil, err
	}
	opt := pulumi.Provider(prov)

	// The bucket VM Import reads the disks from: private, encrypted.
	bucket, err := s3.NewBucketV2(ctx, "images", &s3.BucketV2Args{
		BucketPrefix: pulumi.String("kubeup-images-" + region + "-"),
		Tags:         tags(nil),
	}, opt)
	if err != nil {
		return nil, err
	}
	sse, err := s3.NewBucketServerSideEncryptionConfigurationV2(ctx, "images-encryption", &s3.BucketServerSideEncryptionConfigurationV2Args{
		Bucket: bucket.Bucket,
		Rules: s3.BucketServerSideEncryptionConfigurationV2RuleArray{s3.BucketServerSideEncryptionConfigurationV2RuleArgs{
			ApplyServerSideEncryptionByDefault: &s3.BucketServerSideEncryptionConfigurationV2RuleApplyServerSideEncryptionByDefaultArgs{
				SseAlgorithm: pulumi.String("AES256"),
			},
		}},
	}, opt)
	if err != nil {
		return nil, err
	}
	pab, err := s3.NewBucketPublicAccessBlock(ctx, "images-public-access", &s3.BucketPublicAccessBlockArgs{
		Bucket:                bucket.Bucket,
		BlockPublicAcls:       pulumi.Bool(true),
		BlockPublicPolicy:     pulumi.Bool(true),
		IgnorePublicAcls:      pulumi.Bool(true),
		RestrictPublicBuckets: pulumi.Bool(true),
	}, opt)
	if err != nil {
		return nil, err
	}
	own, err := s3.NewBucketOwnershipControls(ctx, "images-ownership", &s3.BucketOwnershipControlsArgs{
		Bucket: bucket.Bucket,
		Rule:   &s3.BucketOwnershipControlsRuleArgs{ObjectOwnership: pulumi.String("BucketOwnerEnforced")},
	}, opt)
	if err != nil {
		return nil, err
	}

	// VM Import's service role. Role names are global to the account:
	// a prefix keeps each region's stack its own.
	trust, err := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{map[string]any{
			"Effect":    "Allow",
			"Principal": map[string]any{"Service": "vmie.amazonaws.com"},
			"Action":    "sts:AssumeRole",
			"Condition": map[string]any{"StringEquals": map[string]any{"sts:Externalid": "vmimport"}},
		}},
	})
	if err != nil {
		return nil, err
	}
	role, err := iam.NewRole(ctx, "vmimport", &iam.RoleArgs{
		NamePrefix:       pulumi.String("kubeup-vmimport-"),
		Description:      pulumi.String("VM Import of kubeup's images in " + region),
		AssumeRolePolicy: pulumi.String(string(trust)),
		Tags:             tags(nil),
	}, opt)
	if err != nil {
		return nil, err
	}
	policy, err := iam.NewRolePolicy(ctx, "vmimport", &iam.RolePolicyArgs{
		Role: role.Name,
		Policy: bucket.Arn.ApplyT(func(arn string) (string, error) {
			p, err := json.Marshal(map[string]any{
				"Version": "2012-10-17",
				"Statement": []any{
					map[string]any{
						"Effect":   "Allow",
						"Action":   []string{"s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"},
						"Resource": []string{arn, arn + "/*"},
					},
					map[string]any{
						"Effect":   "Allow",
						"Action":   []string{"ec2:ModifySnapshotAttribute", "ec2:CopySnapshot", "ec2:RegisterImage", "ec2:Describe*"},
						"Resource": "*",
					},
				},
			})
			return string(p), err
		}).(pulumi.StringOutput),
	}, opt)
	if err != nil {
		return nil, err
	}

	for _, img := range todo {
		suffix := img.Role + "-" + img.ShortDigest()
		imgTags := tags(map[string]string{cloud.ImageTag: img.SHA256, cloud.RoleTag: img.Role, "Name": img.ImageName()})
		obj, err := s3.NewBucketObjectv2(ctx, "disk-"+suffix, &s3.BucketObjectv2Args{
			Bucket: bucket.Bucket,
			Key:    pulumi.String(img.Role + "-" + img.SHA256 + ".raw"),
			Source: pulumi.NewFileAsset(img.Path),
			Tags:   tags(map[string]string{cloud.ImageTag: img.SHA256, cloud.RoleTag: img.Role}),
		}, opt, pulumi.DependsOn([]pulumi.Resource{sse, pab, own}))
		if err != nil {
			return nil, err
		}
		snap, err := ebs.NewSnapshotImport(ctx, "snapshot-"+suffix, &ebs.SnapshotImportArgs{
			DiskContainer: ebs.SnapshotImportDiskContainerArgs{
				Format:     pulumi.String("RAW"),
				UserBucket: &ebs.SnapshotImportDiskContainerUserBucketArgs{S3Bucket: bucket.Bucket, S3Key: obj.Key},
			},
			RoleName:    role.Name,
			Encrypted:   pulumi.Bool(true),
			Description: pulumi.String(img.ImageName()),
			Tags:        imgTags,
		}, opt,
			// VM Import fails if the role cannot read the bucket yet.
			pulumi.DependsOn([]pulumi.Resource{policy}))
		if err != nil {
			return nil, err
		}
		bootMode := "legacy-bios"
		if img.UEFI {
			bootMode = "uefi"
		}
		ami, err := ec2.NewAmi(ctx, "ami-"+suffix, &ec2.AmiArgs{
			Name:               pulumi.String(img.ImageName()),
			Description:        pulumi.String("kubeup " + img.Role + " image " + img.SHA256),
			VirtualizationType: pulumi.String("hvm"),
			Architecture:       pulumi.String("x86_64"),
			EnaSupport:         pulumi.Bool(true),
			BootMode:           pulumi.String(bootMode),
			ImdsSupport:        pulumi.String("v2.0"),
			RootDeviceName:     pulumi.String("/dev/xvda"),
			EbsBlockDevices: ec2.AmiEbsBlockDeviceArray{ec2.AmiEbsBlockDeviceArgs{
				DeviceName:          pulumi.String("/dev/xvda"),
				SnapshotId:          snap.ID().ToStringOutput(),
				VolumeType:          pulumi.String("gp3"),
				DeleteOnTermination: pulumi.Bool(true),
			}},
			Tags: imgTags,
		}, opt,
			// AMI names are unique in a region: the old one goes first.
			pulumi.DeleteBeforeReplace(true))
		if err != nil {
			return nil, err
		}
		out["image/"+img.Role] = ami.ID()
	}
	return out, nil
}
